"""Batched on-device augmentation of uint8 NHWC batches -> float NCHW in [0, 1]. No per-sample Python."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from fvlib.data import to_float


def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip (CIFAR). (B,H,W,3) uint8 -> (B,3,H,W) float."""
    b, h, w, _ = x.shape
    padded = F.pad(x, (0, 0, pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(b, device=x.device)[:, None, None], rows, cols]
    if flip:
        mask = (torch.rand(b, generator=g, device=g.device) < 0.5).to(x.device)
        out = torch.where(mask[:, None, None, None], out.flip(2), out)
    return to_float(out)


def translate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Small translations (±2 px), no flip: digits are not mirror-symmetric."""
    return crop_flip(x, g, pad=2, flip=False)


def resized_crop_flip(x: torch.Tensor, g: torch.Generator, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """RandomResizedCrop (torchvision defaults) + flip via one affine grid_sample for the batch."""
    b = x.shape[0]
    dev = g.device
    area = torch.empty(b, device=dev).uniform_(scale[0], scale[1], generator=g)
    logr = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    r = torch.exp(logr)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sw)
    cy = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sh)
    sign = torch.where(torch.rand(b, generator=g, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sw * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    img = to_float(x)
    grid = F.affine_grid(theta.to(img.device), list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def identity(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """No augmentation (the evaluation view)."""
    return to_float(x)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "crop_flip": crop_flip, "translate": translate, "resized_crop_flip": resized_crop_flip,
    "none": identity,
}


def get(name: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Augmentation by name; unknown names list the valid ones."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid names: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
