"""Unlearning metrics (reference notes §2.3, §6): UA, RA, TA, MIA-Efficacy, Avg.Gap.

All sets are evaluated on the non-augmented view; for a forget vector every set gets x + δ.
Values are fractions in [0, 1] in code and percentages in tables.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn

from fvlib.data import ImageData, to_float
from fvlib.runtime import autocast
from fvlib.splits import Split

METRICS = ("UA", "MIA", "RA", "TA")


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, delta: torch.Tensor | None = None,
           batch_size: int = 1024, transform: Callable | None = None,
           clamp: bool = False) -> torch.Tensor:
    """Logits (N, C) float32 of uint8 images x (N, H, W, 3), with δ (3, H, W) added when given.

    transform maps a uint8 batch to float (B, 3, H, W) in [0, 1] (default: plain conversion); it is
    how shifted views are scored. clamp: clip x + δ to [0, 1] (off by default, as the authors).
    """
    model.eval()
    out = []
    for chunk in x.split(batch_size):
        xf = transform(chunk) if transform is not None else to_float(chunk)
        if delta is not None:
            xf = xf + delta.to(xf.device, xf.dtype)
            if clamp:
                xf = xf.clamp(0, 1)
        with autocast(xf.device):
            out.append(model(xf).float())
    if not out:
        return torch.empty(0, 0, device=x.device)
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor | None = None,
             **kw) -> float:
    """Top-1 accuracy in [0, 1] of uint8 images x (N, H, W, 3) against labels y (N,); NaN if empty."""
    if len(y) == 0:
        return float("nan")
    return (logits(model, x, delta, **kw).argmax(1) == y).float().mean().item()


@dataclasses.dataclass(frozen=True)
class MIAConfig:
    """SVC membership attack of the authors' code (§6)."""
    C: float = 3.0                  # SVC(C=3, kernel="rbf", gamma="auto")
    seed: int = 1                   # RandomState seed for balanced member / non-member draws
    max_per_side: int | None = None  # optional subsampling of the training sets (off = faithful)


def _balanced(a: np.ndarray, b: np.ndarray, seed: int, cap: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Draw n = min(|a|, |b|, cap) from each without replacement, each with a fresh RandomState."""
    n = min(len(a), len(b), cap or len(a))
    pick = lambda v: v[np.random.RandomState(seed).choice(len(v), n, replace=False)]  # noqa: E731
    return pick(a), pick(b)


def svc_mia(member: torch.Tensor, nonmember: torch.Tensor, target: torch.Tensor,
            cfg: MIAConfig = MIAConfig()) -> float:
    """Share of target samples an RBF-SVC (fit on members=1 vs non-members=0) calls non-member.

    Inputs are 1-D features (e.g. true-label probability). Higher = better unlearning.
    """
    from sklearn.svm import SVC
    m, n = _balanced(member.cpu().numpy(), nonmember.cpu().numpy(), cfg.seed, cfg.max_per_side)
    feats = np.concatenate([m, n])[:, None]
    labels = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    clf = SVC(C=cfg.C, kernel="rbf", gamma="auto").fit(feats, labels)
    if len(target) == 0:
        return float("nan")
    return float(1.0 - clf.predict(target.cpu().numpy()[:, None]).mean())


def threshold_mia(member: torch.Tensor, nonmember: torch.Tensor, target: torch.Tensor) -> float:
    """Loss-threshold attack (second opinion): threshold on per-sample loss that best separates
    members (low loss) from non-members on balanced sets; share of target called non-member."""
    m, n = member.cpu().numpy(), nonmember.cpu().numpy()
    k = min(len(m), len(n))
    m, n = np.sort(m)[:: max(1, len(m) // k)][:k], np.sort(n)[:: max(1, len(n) // k)][:k]
    cands = np.unique(np.concatenate([m, n]))
    # balanced accuracy of "loss <= t -> member" for every candidate threshold, vectorised
    tpr = np.searchsorted(np.sort(m), cands, side="right") / len(m)
    fpr = np.searchsorted(np.sort(n), cands, side="right") / len(n)
    t = cands[np.argmax(tpr - fpr)]
    return float((target.cpu().numpy() > t).mean())


def evaluate(model: nn.Module, data: ImageData, split: Split, delta: torch.Tensor | None = None,
             mia: MIAConfig | None = MIAConfig(), transform: Callable | None = None,
             batch_size: int = 1024) -> dict[str, float]:
    """UA, RA, TA (and MIA, MIA_loss unless mia is None) in [0, 1] for one split.

    transform: a shifted view applied to every set (the shift study); δ is added on top of it.
    """
    kw = dict(delta=delta, transform=transform, batch_size=batch_size)
    tr_logits = logits(model, data.train_x, **kw)
    te_logits = logits(model, data.test_x[split.test_eval], **kw)
    ytr, yte = data.train_y, data.test_y[split.test_eval]
    correct = tr_logits.argmax(1) == ytr
    out = {"UA": 1.0 - correct[split.forget].float().mean().item(),
           "RA": correct[split.retain].float().mean().item(),
           "TA": (te_logits.argmax(1) == yte).float().mean().item()}
    if mia is not None:
        p_tr = tr_logits.softmax(1).gather(1, ytr[:, None]).squeeze(1)
        p_te = te_logits.softmax(1).gather(1, yte[:, None]).squeeze(1)
        out["MIA"] = svc_mia(p_tr[split.retain], p_te, p_tr[split.forget], mia)
        l_tr = nn.functional.cross_entropy(tr_logits, ytr, reduction="none")
        l_te = nn.functional.cross_entropy(te_logits, yte, reduction="none")
        out["MIA_loss"] = threshold_mia(l_tr[split.retain], l_te, l_tr[split.forget])
    return out


def avg_gap(means: dict[str, float], retrain: dict[str, float],
            keys: tuple[str, ...] = METRICS) -> float:
    """Mean over UA, MIA, RA, TA of |method mean - Retrain mean| (always recomputed, §10.12)."""
    return float(np.mean([abs(means[k] - retrain[k]) for k in keys]))


def per_class_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                       delta: torch.Tensor | None = None, **kw) -> np.ndarray:
    """(num_classes,) accuracy per true class, in [0, 1] (NaN for an absent class)."""
    correct = (logits(model, x, delta, **kw).argmax(1) == y).float()
    hits = torch.zeros(num_classes, device=y.device).index_add_(0, y, correct)
    counts = torch.bincount(y, minlength=num_classes).float()
    return (hits / counts).cpu().numpy()
