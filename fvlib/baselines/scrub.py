"""SCRUB: a student moves away from the frozen θ_o teacher on D_f and stays close on D_r
(docs/protocol.md P7)."""
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
class SCRUBConfig(LoopConfig):
    """SCRUB [FV SCRUB.py, D7]."""
    lr: float = 5e-4                  # [sgda_lr declared in FV SCRUB.py, D7]
    epochs: int = 3                   # [3 declared in FV SCRUB.py; D7 3-5; Table A1 runtime]
    msteps: int = 2                   # epochs that start with a max-step on D_f [FV/SCRUB default]
    T: float = 4.0                    # distillation temperature [SCRUB DistillKL]
    gamma: float = 0.99               # min-step CE weight [FV/SCRUB]
    alpha: float = 0.001              # min-step KL weight [FV/SCRUB]


def kl_t(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T))·T², batch mean, of logits (B, C) [SCRUB DistillKL]."""
    log_s = F.log_softmax(student.float() / T, dim=1)
    log_t = F.log_softmax(teacher.float() / T, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * T * T


def scrub_loss(teacher: nn.Module, cfg: SCRUBConfig, max_step: bool) -> LossFn:
    """Max-step: −KL_T on D_f; min-step: γ·CE + α·KL_T on D_r (P7). The teacher is frozen."""
    def loss_fn(model, x, y, _b):
        with torch.no_grad():
            t = teacher(x)
        s = model(x)
        if max_step:
            return -kl_t(s, t, cfg.T)
        return cfg.gamma * F.cross_entropy(s, y) + cfg.alpha * kl_t(s, t, cfg.T)
    return loss_fn


def scrub(model: nn.Module, data: ImageData, split: Split, cfg: SCRUBConfig) -> nn.Module:
    """Max-steps on D_f in the first cfg.msteps epochs, a min-step on D_r in every epoch."""
    teacher = copy_of(model, data).eval().requires_grad_(False)
    run = Runner(copy_of(model, data), data, cfg, "scrub")
    for epoch in range(cfg.epochs):
        if epoch < cfg.msteps:
            run.epoch(split.forget, scrub_loss(teacher, cfg, max_step=True))
        run.epoch(split.retain, scrub_loss(teacher, cfg, max_step=False))
    return run.model.eval()


register("scrub", "SCRUB", 60, SCRUBConfig, scrub)
