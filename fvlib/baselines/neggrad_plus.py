"""NegGrad+: descent on D_r and ascent on D_f in the same batches (docs/protocol.md P7, P10 M3)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fvlib.baselines import register
from fvlib.baselines.loop import LoopConfig, LossFn, Runner, copy_of
from fvlib.data import ImageData
from fvlib.splits import Split


@dataclasses.dataclass(frozen=True)
class NegGradPlusConfig(LoopConfig):
    """NegGrad+ [FV code defaults, D7]."""
    lr: float = 0.01                  # [FV code default --unlearn_lr, D7]
    epochs: int = 10                  # epochs over D_f ∪ D_r [FV code default, D7]
    beta: float = 0.999               # retain weight β, forget gets 1-β [Kurmanji et al., whose clean
    #                                   per-side-mean form we use; FV's 0.5 goes with its /n double
    #                                   normalisation; with clean means it collapsed digits (RA≈0.1)]


def neggrad_plus_loss(forget: torch.Tensor, beta: float) -> LossFn:
    """β·mean CE(retain part) − (1−β)·mean CE(forget part); an absent side contributes 0.

    Clean per-side means instead of the code's double normalisation (P7, P10 M3).
    """
    def loss_fn(model, x, y, b):
        per = F.cross_entropy(model(x), y, reduction="none")
        is_f = forget[b].float()
        mean_f = (per * is_f).sum() / is_f.sum().clamp(min=1)
        mean_r = (per * (1 - is_f)).sum() / (1 - is_f).sum().clamp(min=1)
        return beta * mean_r - (1 - beta) * mean_f
    return loss_fn


def neggrad_plus(model: nn.Module, data: ImageData, split: Split, cfg: NegGradPlusConfig) -> nn.Module:
    """Shuffled batches from D_f ∪ D_r (the whole training set) with the β-weighted loss."""
    run = Runner(copy_of(model, data), data, cfg, "neggrad_plus")
    loss_fn = neggrad_plus_loss(split.forget, cfg.beta)
    everything = torch.ones_like(split.forget)
    for _ in range(cfg.epochs):
        run.epoch(everything, loss_fn)
    return run.model.eval()


register("neggrad_plus", "NegGrad+", 40, NegGradPlusConfig, neggrad_plus)
