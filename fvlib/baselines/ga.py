"""GA: gradient ascent on the forget set (docs/protocol.md P7)."""
from __future__ import annotations

import dataclasses

from torch import nn

from fvlib.baselines import register
from fvlib.baselines.loop import LoopConfig, Runner, copy_of, neg_ce_loss
from fvlib.data import ImageData
from fvlib.splits import Split


@dataclasses.dataclass(frozen=True)
class GAConfig(LoopConfig):
    """Gradient ascent [US/SAL README]."""
    lr: float = 1e-4                  # [US/SAL README]
    epochs: int = 5                   # epochs over D_f [US/SAL README]


def ga(model: nn.Module, data: ImageData, split: Split, cfg: GAConfig) -> nn.Module:
    """Minimise −CE on D_f for cfg.epochs."""
    run = Runner(copy_of(model, data), data, cfg, "ga")
    for _ in range(cfg.epochs):
        run.epoch(split.forget, neg_ce_loss)
    return run.model.eval()


register("ga", "GA", 30, GAConfig, ga)
