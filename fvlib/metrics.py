"""Unlearning metrics (docs/protocol.md P2.3, P6): UA, RA, TA, MIA-Efficacy, Avg.Gap.

Every function takes a *system*: an nn.Module mapping [0, 1] pixels to logits — θ_o, an unlearned
model, or `fv.wrap(θ_o)` for a forget vector (which adds δ itself). All sets are scored on the
non-augmented view. Values are fractions in [0, 1] in code and percentages in tables.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from fvlib.data import ImageData, to_float
from fvlib.mia import Job, MIAConfig
from fvlib.runtime import autocast
from fvlib.splits import Split

METRICS = ("UA", "MIA", "RA", "TA")


@torch.no_grad()
def logits(system: nn.Module, x: torch.Tensor, batch_size: int = 1024,
           transform: Callable | None = None) -> torch.Tensor:
    """Logits (N, C) float32 of uint8 images x (N, H, W, 3) under a system.

    transform maps a uint8 batch to float (B, 3, H, W) in [0, 1] (default: plain conversion); it is
    how shifted views are scored (a forget vector's δ is then added on top, inside the system).
    """
    check_system(system)
    system.eval()
    out = []
    for chunk in x.split(batch_size):
        xf = transform(chunk) if transform is not None else to_float(chunk)
        with autocast(xf.device):
            out.append(system(xf).float())
    if not out:
        return torch.empty(0, 0, device=x.device)
    return torch.cat(out)


def check_system(system: object) -> None:
    """Raise TypeError unless system is an nn.Module (a ForgetVector must be wrapped around θ_o)."""
    if not isinstance(system, nn.Module):
        hint = (" (a ForgetVector: pass fv.wrap(θ_o), the unlearned system)"
                if type(system).__name__ == "ForgetVector" else "")
        raise TypeError(f"a system must be an nn.Module mapping [0, 1] pixels to logits, got "
                        f"{type(system).__name__}{hint}")


def percent(x):
    """Fractions in [0, 1] (records) as percentages (tables): one place for the ×100."""
    return x * 100


def accuracy(system: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> float:
    """Top-1 accuracy in [0, 1] of uint8 images x (N, H, W, 3) against labels y (N,); NaN if empty."""
    if len(y) == 0:
        return float("nan")
    return (logits(system, x, **kw).argmax(1) == y).float().mean().item()


def _features(tr: torch.Tensor, te: torch.Tensor, ytr: torch.Tensor, yte: torch.Tensor,
              split: Split) -> dict[str, np.ndarray]:
    """Per-sample MIA features (numpy): true-label probability p_* and loss l_* per set."""
    p_tr = tr.softmax(1).gather(1, ytr[:, None]).squeeze(1)
    p_te = te.softmax(1).gather(1, yte[:, None]).squeeze(1)
    l_tr = nn.functional.cross_entropy(tr, ytr, reduction="none")
    l_te = nn.functional.cross_entropy(te, yte, reduction="none")
    np_ = lambda v: v.cpu().numpy()  # noqa: E731
    return {"p_retain": np_(p_tr[split.retain]), "p_test": np_(p_te), "p_forget": np_(p_tr[split.forget]),
            "l_retain": np_(l_tr[split.retain]), "l_test": np_(l_te), "l_forget": np_(l_tr[split.forget])}


def measure(system: nn.Module, data: ImageData, split: Split, mia: MIAConfig | None = MIAConfig(),
            transform: Callable | None = None, batch_size: int = 1024) -> tuple[dict[str, float], Job | None]:
    """(UA, RA, TA now; the MIA fits as a deferred Job, or None without mia) of a system on one
    split. The record store runs the job inline or beside the GPU's next system."""
    split.check(data)
    kw = dict(transform=transform, batch_size=batch_size)
    tr_logits = logits(system, data.train_x, **kw)
    te_logits = logits(system, data.test_x[split.test_eval], **kw)
    _check_logits(tr_logits, te_logits, data)
    ytr, yte = data.train_y, data.test_y[split.test_eval]
    correct = tr_logits.argmax(1) == ytr
    acc = {"UA": 1.0 - correct[split.forget].float().mean().item(),
           "RA": correct[split.retain].float().mean().item(),
           "TA": (te_logits.argmax(1) == yte).float().mean().item()}
    if mia is None:
        return acc, None
    return acc, Job(_features(tr_logits, te_logits, ytr, yte, split), mia)


def _check_logits(tr: torch.Tensor, te: torch.Tensor, data: ImageData) -> None:
    """One clear error for logits of the wrong width or with NaN/inf."""
    if tr.shape[1] != data.num_classes:
        raise ValueError(f"the system returns {tr.shape[1]} logits per image but {data.name} has "
                         f"{data.num_classes} classes; use a model trained on these classes")
    if not (torch.isfinite(tr).all() and torch.isfinite(te).all()):
        raise FloatingPointError("the system produced non-finite logits; check its weights (a diverged "
                                 "model) or its forget vector δ.")


def evaluate(system: nn.Module, data: ImageData, split: Split, mia: MIAConfig | None = MIAConfig(),
             transform: Callable | None = None, batch_size: int = 1024) -> dict[str, float]:
    """UA, RA, TA (and MIA, MIA_loss unless mia is None) in [0, 1] of a system on one split.

    transform: a shifted view applied to every set (the shift study).
    """
    acc, job = measure(system, data, split, mia, transform, batch_size)
    return {**acc, **(job() if job is not None else {})}


def avg_gap(means: dict[str, float], retrain: dict[str, float],
            keys: tuple[str, ...] = METRICS) -> float:
    """Mean over UA, MIA, RA, TA of |method mean - Retrain mean| (always recomputed, P10 D12)."""
    return float(np.mean([abs(means[k] - retrain[k]) for k in keys]))


def per_class_accuracy(system: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                       **kw) -> np.ndarray:
    """(num_classes,) accuracy per true class, in [0, 1] (NaN for an absent class)."""
    correct = (logits(system, x, **kw).argmax(1) == y).float()
    hits = torch.zeros(num_classes, device=y.device).index_add_(0, y, correct)
    counts = torch.bincount(y, minlength=num_classes).float()
    return (hits / counts).cpu().numpy()
