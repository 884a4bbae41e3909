"""Grad-CAM saliency of unlearned systems (paper Figs. 4-5, A4-A5; docs/protocol.md P9.2).

Every function takes *systems* (nn.Modules mapping [0, 1] pixels to logits): θ_o, a baseline's
model, or `fv.wrap(θ_o)` for a forget vector. pytorch-grad-cam's GradCAM runs on the whole system,
so a forget vector's δ is part of the forward and backward pass and the map is that of x + δ, the
input θ_o really sees. The target layer is `models.CAM_LAYERS[arch]` of the weights-bearing model
(`forget_vector.unwrap`), or arch(model) when arch is a layer-picking function (your own model).
Target = the predicted class unless given. Maps are (N, H, W) float32 in [0, 1] on the CPU. Also
here: which images to show (`pick_images`) and the saliency-change number fvlib adds to the paper's
qualitative figures (1 − cosine to the original model's map).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torch.nn import functional as F

from fvlib import metrics
from fvlib.data import ImageData, to_float
from fvlib.forget_vector import shown, unwrap
from fvlib.models import CAM_LAYERS, frozen
from fvlib.runtime import generator

Targets = int | Sequence[int] | torch.Tensor | None
# where Grad-CAM hooks: a registered architecture name (models.CAM_LAYERS), or a function that
# picks the layer from the weights-bearing model (e.g. adapter.cam_layer for your own model)
Layer = str | Callable[[nn.Module], nn.Module]


def target_layer(arch: Layer, model: nn.Module) -> nn.Module:
    """The layer Grad-CAM hooks in model: CAM_LAYERS[arch] for a name, else arch(model)."""
    return arch(model) if callable(arch) else CAM_LAYERS[arch](model)


def _layer_name(arch: Layer) -> str:
    return arch if isinstance(arch, str) else getattr(arch, "__name__", repr(arch))


def _device(system: nn.Module) -> torch.device:
    return next(system.parameters()).device


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]; float input passes through as float32."""
    return to_float(x) if x.dtype == torch.uint8 else x.float()


def _targets(targets: Targets, n: int) -> list[ClassifierOutputTarget] | None:
    """None (predicted class), one class for all, or one class per image -> GradCAM targets."""
    if targets is None:
        return None
    classes = ([int(targets)] * n if isinstance(targets, int)
               else [int(t) for t in torch.as_tensor(targets).flatten().tolist()])
    if len(classes) != n or min(classes) < 0:  # a negative index would silently pick a class
        raise ValueError(f"targets must be {n} class indices >= 0, got {classes}")
    return [ClassifierOutputTarget(c) for c in classes]


def cam_and_logits(system: nn.Module, x: torch.Tensor, arch: Layer, targets: Targets = None,
                   batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps (N, H, W) in [0, 1] and the float32 logits (N, C) of the same forward pass.

    x: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1]; the system adds its δ (if any) itself.
    """
    xf = _as_float(x).to(_device(system))
    n, (h, w) = len(xf), xf.shape[-2:]
    if n == 0:
        return torch.zeros(0, h, w), torch.zeros(0, 0)
    tg = _targets(targets, n)
    layer = target_layer(arch, unwrap(system))
    maps, logits = [], []
    # frozen: eval mode (BN running statistics) and no parameter gradients; every module's mode,
    # flag and .grad come back afterwards. enable_grad: callers are often under no_grad. The
    # GradCAM context manager releases its hooks.
    with frozen(system), torch.enable_grad(), GradCAM(model=system, target_layers=[layer]) as cam:
        for i in range(0, n, batch_size):
            # a leaf requiring grad keeps a graph alive although every parameter is frozen
            chunk = xf[i:i + batch_size].detach().clone().requires_grad_(True)
            maps.append(torch.from_numpy(cam(chunk, None if tg is None else tg[i:i + batch_size])))
            logits.append(cam.outputs.detach().float().cpu())
    if len(maps) != math.ceil(n / batch_size):  # GradCAM.__exit__ silently swallows IndexError
        raise RuntimeError("Grad-CAM failed part-way (is a target class out of range?)")
    return torch.cat(maps).clamp_(0, 1), torch.cat(logits)


def gradcam(system: nn.Module, x: torch.Tensor, arch: Layer, targets: Targets = None,
            batch_size: int = 64) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) float32 in [0, 1] of a system on uint8 (N,H,W,3) or float x."""
    return cam_and_logits(system, x, arch, targets, batch_size)[0]


def overlay(img: torch.Tensor | np.ndarray, cam: torch.Tensor | np.ndarray,
            size: int | None = None, image_weight: float = 0.5) -> np.ndarray:
    """Jet heat map of cam (H, W) over img (H, W, 3) uint8 or [0, 1] float -> (S, S, 3) float RGB."""
    arr = np.asarray(img)
    im = torch.as_tensor(arr).float()
    im = (im / 255.0 if arr.dtype == np.uint8 else im).clamp(0, 1)
    c = torch.as_tensor(np.asarray(cam)).float()
    if size is not None:  # nearest keeps the pixels crisp; bilinear keeps the heat map smooth
        im = F.interpolate(im.permute(2, 0, 1)[None], size=(size, size), mode="nearest")[0]
        im = im.permute(1, 2, 0)
        c = F.interpolate(c[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    out = show_cam_on_image(im.numpy(), c.clamp(0, 1).numpy(), use_rgb=True, image_weight=image_weight)
    return out.astype(np.float32) / 255.0


def saliency_change(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity (N,) between maps (N, H, W); two all-zero maps count as identical."""
    a = torch.as_tensor(maps_a).flatten(1).double()
    b = torch.as_tensor(maps_b).flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(1e-12)
    cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos)
    return (1 - cos).clamp_(0, 2).float()


def _display(system: nn.Module, images: torch.Tensor) -> np.ndarray:
    """What the system's model sees, for display: (N, H, W, 3) float in [0, 1] (x + δ clipped)."""
    x = shown(system, _as_float(images).to(_device(system)))
    return x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def panel(images: torch.Tensor, methods: dict[str, nn.Module], arch: Layer, labels: torch.Tensor,
          classes: Sequence[str], display_size: int = 128, cell_inches: float = 1.6) -> tuple[Figure, dict]:
    """Figs. 4-5 grid: rows = uint8 images (N, H, W, 3), columns = methods (name -> system).

    Each cell overlays the Grad-CAM (target = predicted class) on the input the model sees (x + δ
    for a forget vector), titled with the prediction and ✓ (= true label) or ✗ (forgotten).
    Returns (figure, numbers) with predictions, correctness and saliency change vs the first column.
    """
    y = [int(v) for v in torch.as_tensor(labels).cpu().flatten().tolist()]
    if len(y) != len(images) or not y or not methods:
        raise ValueError(f"need >= 1 method and matching images/labels, got {len(images)}/{len(y)}")
    results = {name: cam_and_logits(system, images, arch) for name, system in methods.items()}
    ref_name = next(iter(results))
    fig = Figure(figsize=(cell_inches * len(methods), cell_inches * len(y) + 0.4), layout="constrained")
    axes = fig.subplots(len(y), len(methods), squeeze=False)
    numbers: dict = {"arch": _layer_name(arch), "reference": ref_name, "labels": y,
                     "label_names": [classes[v] for v in y], "methods": {}}
    for j, (name, (maps, logits)) in enumerate(results.items()):
        preds = logits.argmax(1).tolist()
        correct = [p == t for p, t in zip(preds, y)]
        change = saliency_change(maps, results[ref_name][0]).tolist()
        seen = _display(methods[name], images)
        for i, ax in enumerate(axes[:, j]):
            ax.imshow(overlay(seen[i], maps[i], display_size))
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{classes[preds[i]]} {'✓' if correct[i] else '✗'}"
            ax.set_title(f"{name}\n{title}" if i == 0 else title, fontsize=8,
                         color="tab:green" if correct[i] else "tab:red")
            if j == 0:
                ax.set_ylabel(f"true: {classes[y[i]]}", fontsize=8)
        numbers["methods"][name] = {
            "predictions": preds, "predicted_names": [classes[p] for p in preds],
            "correct": correct, "accuracy": sum(correct) / len(y),
            "saliency_change": change, "mean_saliency_change": sum(change) / len(y)}
    return fig, numbers


def pick_images(data: ImageData, mask: torch.Tensor, n: int, seed: int = 0,
                spread_classes: bool = False, system: nn.Module | None = None) -> torch.Tensor:
    """n training-image indices (CPU int64) drawn at random from mask (N_train,) bool.

    spread_classes: round-robin over the classes present (Fig. 5 shows retain images of different
    classes). system: prefer images it classifies correctly (so θ_o's ✓ is the starting point);
    misclassified ones are used only if too few are correct.
    """
    idx = mask.nonzero().flatten().cpu()
    idx = idx[torch.randperm(len(idx), generator=generator(seed, "gradcam-images"))]
    if system is not None and len(idx):
        with frozen(system):  # metrics.logits leaves the system in eval mode; frozen restores it
            pred = metrics.logits(system, data.train_x[idx.to(data.device)]).argmax(1).cpu()
        ok = pred == data.train_y[idx.to(data.device)].cpu()
        idx = torch.cat([idx[ok], idx[~ok]])  # stable: keeps the random order within each group
    if spread_classes:
        y = data.train_y[idx.to(data.device)].cpu()
        queues = {c: idx[y == c].tolist() for c in dict.fromkeys(y.tolist())}
        picked: list[int] = []
        while len(picked) < min(n, len(idx)):
            for q in queues.values():
                if q and len(picked) < n:
                    picked.append(q.pop(0))
        return torch.tensor(picked, dtype=torch.long)
    return idx[:n].clone()


def saliency_change_table(methods: dict[str, nn.Module],
                          image_sets: dict[str, tuple[torch.Tensor, torch.Tensor]], arch: Layer,
                         reference: str | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Mean Grad-CAM saliency change (1 − cosine vs the reference method's map; default: the first method).

    methods: name -> system, as `panel`; image_sets: set name (e.g. "forget", "retain") -> (uint8
    images (N, H, W, 3), labels (N,)). Target = each method's predicted class. Returns one row per
    method with, for each set S: change_S (mean), change_S_std, acc_S (share of predictions equal to
    the label: low on forget images = forgotten) and n_S.
    """
    ref = reference if reference is not None else next(iter(methods))
    if ref not in methods:
        raise ValueError(f"reference {ref!r} is not one of the methods {list(methods)}")
    table = pd.DataFrame(index=pd.Index(list(methods), name="method"))
    for set_name, (images, labels) in image_sets.items():
        y = torch.as_tensor(labels).cpu()
        out = {name: cam_and_logits(system, images, arch, None, batch_size)
               for name, system in methods.items()}
        for name, (maps, logits) in out.items():
            change = saliency_change(maps, out[ref][0])
            table.loc[name, f"change_{set_name}"] = float(change.mean())
            table.loc[name, f"change_{set_name}_std"] = float(change.std(unbiased=False))
            table.loc[name, f"acc_{set_name}"] = float((logits.argmax(1) == y).float().mean())
        table[f"n_{set_name}"] = len(y)
    return table
