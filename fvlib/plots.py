"""Plotting functions: data in, matplotlib Figure out (saving is figures.save's job)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from fvlib.data import ImageData


def sample_grid(data: ImageData, per_class: int = 8, seed: int = 0) -> tuple[plt.Figure, dict]:
    """Rows = classes, columns = random training images of that class. Returns (fig, indices)."""
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(data.num_classes, per_class,
                             figsize=(per_class * 0.9, data.num_classes * 0.9), squeeze=False)
    picked = {}
    for c, name in enumerate(data.classes):
        idx = (data.train_y == c).nonzero().flatten().cpu()
        idx = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        picked[name] = idx.tolist()
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if j < len(idx):
                ax.imshow(data.train_x[idx[j]].cpu().numpy())
        axes[c, 0].text(-0.08, 0.5, name, transform=axes[c, 0].transAxes, ha="right",
                        va="center", fontsize=7)
    fig.suptitle(f"{data.name}: {len(data.train_y)} train / {len(data.test_y)} test images")
    return fig, {"indices": picked}


def training_curve(log: list[dict]) -> plt.Figure:
    """Loss and learning rate per epoch of one training run."""
    epochs = [r["epoch"] for r in log]
    fig, ax = plt.subplots(1, 2, figsize=(7, 2.6))
    ax[0].plot(epochs, [r["loss"] for r in log])
    ax[0].set(xlabel="epoch", ylabel="training loss")
    ax[1].plot(epochs, [r["lr"] for r in log])
    ax[1].set(xlabel="epoch", ylabel="learning rate")
    fig.tight_layout()
    return fig


def class_accuracy_bars(per_class: np.ndarray, classes: list[str], title: str) -> plt.Figure:
    """Bar chart of per-class accuracy (%)."""
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.bar(range(len(classes)), 100 * per_class, color="#4c72b0")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    fig.tight_layout()
    return fig
