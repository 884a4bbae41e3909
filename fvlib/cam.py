"""Grad-CAM saliency with and without a forget vector (paper Figs. 4-5, reference notes §9).

pytorch-grad-cam's GradCAM on `models.CAM_LAYERS[arch]`; a forget vector δ enters through a
wrapper, so the map is that of x + δ (the input the unlearned model really sees). Target = the
predicted class unless given. Maps are (N, H, W) float32 in [0, 1] on the CPU.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torch.nn import functional as F

from fvlib.data import to_float
from fvlib.models import CAM_LAYERS

Targets = int | Sequence[int] | torch.Tensor | None
Method = tuple[nn.Module, torch.Tensor | None]


class _AddDelta(nn.Module):
    """model(x + δ): δ acts as a first layer, so Grad-CAM's forward and backward see x + δ."""

    def __init__(self, model: nn.Module, delta: torch.Tensor | None, clamp: bool):
        super().__init__()
        self.model, self.clamp = model, clamp
        self.register_buffer("delta", delta, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delta is not None:
            x = x + self.delta
            x = x.clamp(0, 1) if self.clamp else x
        return self.model(x)


@contextlib.contextmanager
def _inference_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters inside; each module's mode, requires_grad and .grad restored."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval()  # BN running statistics, as at evaluation time
    for p, _, _ in params:
        p.requires_grad_(False)  # the graph runs through the input only: no parameter gradients
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag, grad in params:  # GradCAM calls zero_grad(), which drops .grad: put it back
            p.requires_grad_(flag)
            p.grad = grad


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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


def cam_and_logits(model: nn.Module, x: torch.Tensor, arch: str, targets: Targets = None,
                   delta: torch.Tensor | None = None, clamp: bool = False,
                   batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps (N, H, W) in [0, 1] and the float32 logits (N, C) of the same forward pass."""
    xf = _as_float(x).to(_device(model))
    n, (h, w) = len(xf), xf.shape[-2:]
    if n == 0:
        return torch.zeros(0, h, w), torch.zeros(0, 0)
    d = None if delta is None else delta.detach().to(xf.device, torch.float32)
    tg = _targets(targets, n)
    maps, logits = [], []
    layer = CAM_LAYERS[arch](model)
    # enable_grad: callers are often under no_grad; the context manager releases GradCAM's hooks.
    with _inference_state(model), torch.enable_grad(), \
            GradCAM(model=_AddDelta(model, d, clamp), target_layers=[layer]) as cam:
        for i in range(0, n, batch_size):
            # A leaf requiring grad keeps a graph alive even when every parameter is frozen.
            chunk = xf[i:i + batch_size].detach().clone().requires_grad_(True)
            maps.append(torch.from_numpy(cam(chunk, None if tg is None else tg[i:i + batch_size])))
            logits.append(cam.outputs.detach().float().cpu())
    if len(maps) != math.ceil(n / batch_size):  # GradCAM.__exit__ silently swallows IndexError
        raise RuntimeError("Grad-CAM failed part-way (is a target class out of range?)")
    return torch.cat(maps).clamp_(0, 1), torch.cat(logits)


def gradcam(model: nn.Module, x: torch.Tensor, arch: str, targets: Targets = None,
            delta: torch.Tensor | None = None, clamp: bool = False,
            batch_size: int = 64) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) float32 in [0, 1] of model(x + δ) for uint8 (N,H,W,3) or float x."""
    return cam_and_logits(model, x, arch, targets, delta, clamp, batch_size)[0]


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, delta: torch.Tensor | None = None,
                clamp: bool = False, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) int64 on the CPU of model(x + δ), float32 like the CAM's forward."""
    xf = _as_float(x).to(_device(model))
    wrapped = _AddDelta(model, None if delta is None else delta.to(xf.device, torch.float32), clamp)
    with _inference_state(model):
        out = [wrapped(c).argmax(1).cpu() for c in xf.split(batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


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


def saliency_shift(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity (N,) between maps (N, H, W); two all-zero maps count as identical."""
    a = torch.as_tensor(maps_a).flatten(1).double()
    b = torch.as_tensor(maps_b).flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(1e-12)
    cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos)
    return (1 - cos).clamp_(0, 2).float()


def shift_summary(maps: dict[str, torch.Tensor], reference: str | None = None) -> dict[str, float]:
    """Mean saliency shift of each method's maps (N, H, W) from the reference's (default: first)."""
    ref = maps[reference if reference is not None else next(iter(maps))]
    return {name: float(saliency_shift(m, ref).mean()) for name, m in maps.items()}


def _shown(images: torch.Tensor, delta: torch.Tensor | None) -> np.ndarray:
    """What the model sees, for display: uint8 (N, H, W, 3) + δ -> float (N, H, W, 3) in [0, 1]."""
    x = to_float(images.cpu())
    if delta is not None:
        x = x + delta.detach().float().cpu()
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def panel(images: torch.Tensor, methods: dict[str, Method], arch: str, labels: torch.Tensor,
          classes: Sequence[str], display_size: int = 128, clamp: bool = False,
          cell_inches: float = 1.6) -> tuple[Figure, dict]:
    """Figs. 4-5 grid: rows = uint8 images (N, H, W, 3), columns = methods (name -> (model, δ)).

    Each cell overlays the Grad-CAM (target = predicted class) on the input the model sees (x + δ
    for a forget vector), titled with the prediction and ✓ (= true label) or ✗ (forgotten).
    Returns (figure, numbers) with predictions, correctness and shift vs the first column.
    """
    y = [int(v) for v in torch.as_tensor(labels).cpu().flatten().tolist()]
    if len(y) != len(images) or not y or not methods:
        raise ValueError(f"need >= 1 method and matching images/labels, got {len(images)}/{len(y)}")
    results = {name: cam_and_logits(model, images, arch, None, delta, clamp)
               for name, (model, delta) in methods.items()}
    ref_name = next(iter(results))
    fig = Figure(figsize=(cell_inches * len(methods), cell_inches * len(y) + 0.4), layout="constrained")
    axes = fig.subplots(len(y), len(methods), squeeze=False)
    numbers: dict = {"arch": arch, "reference": ref_name, "labels": y,
                     "label_names": [classes[v] for v in y], "methods": {}}
    for j, (name, (maps, logits)) in enumerate(results.items()):
        preds = logits.argmax(1).tolist()
        correct = [p == t for p, t in zip(preds, y)]
        shift = saliency_shift(maps, results[ref_name][0]).tolist()
        shown = _shown(images, methods[name][1])
        for i, ax in enumerate(axes[:, j]):
            ax.imshow(overlay(shown[i], maps[i], display_size))
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
            "saliency_shift": shift, "mean_saliency_shift": sum(shift) / len(y)}
    return fig, numbers
