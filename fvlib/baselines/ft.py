"""FT: fine-tuning θ_o on D_r only (docs/protocol.md P7)."""
from __future__ import annotations

import dataclasses

from torch import nn

from fvlib.baselines import register
from fvlib.baselines.loop import LoopConfig, Runner, ce_loss, copy_of
from fvlib.data import ImageData
from fvlib.splits import Split


@dataclasses.dataclass(frozen=True)
class FTConfig(LoopConfig):
    """Fine-tuning [US README]."""
    lr: float = 0.01                  # [US README]
    epochs: int = 10                  # epochs over D_r [US README]


def ft(model: nn.Module, data: ImageData, split: Split, cfg: FTConfig) -> nn.Module:
    """CE on D_r for cfg.epochs."""
    run = Runner(copy_of(model, data), data, cfg, "ft")
    for _ in range(cfg.epochs):
        run.epoch(split.retain, ce_loss)
    return run.model.eval()


register("ft", "FT", 10, FTConfig, ft)
