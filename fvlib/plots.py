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


def avg_gap_bars(gaps: dict[str, dict[str, float]]) -> plt.Figure:
    """Grouped bars of Avg.Gap (%) per method, one group per scenario (lower is better)."""
    scenarios = list(gaps)
    methods = list(next(iter(gaps.values())))
    fig, ax = plt.subplots(figsize=(7, 2.8))
    width = 0.8 / len(scenarios)
    for i, sc in enumerate(scenarios):
        ax.bar(np.arange(len(methods)) + i * width, [gaps[sc].get(m, np.nan) for m in methods],
               width, label=sc)
    ax.set_xticks(np.arange(len(methods)) + width * (len(scenarios) - 1) / 2, methods,
                  rotation=30, ha="right")
    ax.set(ylabel="Avg.Gap vs Retrain (%)")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def arithmetic_heatmaps(grid: dict, class_a: str, class_b: str,
                        star: tuple[float, float] | None = None) -> plt.Figure:
    """Fig. 3: four heatmaps (UA_a, UA_b, TA, avg) over (w1, w2), integer % per cell, star = optimum."""
    import seaborn as sns
    w = grid["weights"]
    panels = [("UA_a", f"UA class {class_a}"), ("UA_b", f"UA class {class_b}"),
              ("TA", "TA (other classes)"), ("avg", "average")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (key, title) in zip(axes, panels):
        sns.heatmap(100 * np.asarray(grid[key]), ax=ax, vmin=0, vmax=100, cmap="Reds", annot=True,
                    fmt=".0f", cbar=ax is axes[-1], xticklabels=w, yticklabels=w, square=True,
                    annot_kws={"fontsize": 7})
        ax.invert_yaxis()
        ax.set(xlabel="w2", ylabel="w1", title=title)
        if star is not None:  # continuous position in cell units (cell i spans [i, i+1])
            step = w[1] - w[0]
            ax.plot(star[1] / step + 0.5, star[0] / step + 0.5, marker="*", color="limegreen",
                    markersize=14, markeredgecolor="black")
    fig.tight_layout()
    return fig


def delta_images(deltas, titles: list[str]) -> plt.Figure:
    """Forget vectors as images: each δ (3, H, W) min-max scaled to [0, 1] for display."""
    n = len(titles)
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.6), squeeze=False)
    for ax, d, t in zip(axes[0], deltas, titles):
        d = d.detach().float().cpu()
        d = (d - d.min()) / (d.max() - d.min() + 1e-12)
        ax.imshow(d.permute(1, 2, 0).numpy())
        ax.set_title(t, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def band(ax, x, frame, label: str) -> dict:
    """Mean line with a ±std band (clipped to 0–100 %) from a frame with columns mean, std (in %)."""
    mu, sd = frame["mean"].to_numpy(), frame["std"].to_numpy()
    ax.plot(x, mu, marker="o", ms=3, label=label)
    ax.fill_between(x, np.clip(mu - sd, 0, 100), np.clip(mu + sd, 0, 100), alpha=0.2)
    return {"mean": mu.tolist(), "std": sd.tolist()}
