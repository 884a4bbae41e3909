"""RL: random labelling of D_f, interleaved with D_r (docs/protocol.md P7)."""
from __future__ import annotations

import dataclasses

from torch import nn

from fvlib.baselines import register
from fvlib.baselines.loop import LoopConfig, Runner, copy_of, random_label_epochs
from fvlib.data import ImageData
from fvlib.splits import Split


@dataclasses.dataclass(frozen=True)
class RLConfig(LoopConfig):
    """Random labelling [FV/US code default; D7 range 0.01-0.013]."""
    lr: float = 0.01                  # [FV/US code default]
    epochs: int = 10                  # each = a D_f random-label pass + a D_r pass [code default]


def rl(model: nn.Module, data: ImageData, split: Split, cfg: RLConfig) -> nn.Module:
    """Per epoch: random labels on D_f, then true labels on D_r."""
    return random_label_epochs(Runner(copy_of(model, data), data, cfg, "rl"), split, cfg.epochs)


register("rl", "RL", 20, RLConfig, rl)
