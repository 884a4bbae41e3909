"""Retrain: the gold standard, θ_o's architecture trained from scratch on D_r (docs/protocol.md P3.4)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from fvlib import models, train
from fvlib.baselines import register
from fvlib.data import ImageData
from fvlib.splits import Split
from fvlib.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """θ_o's architecture and recipe (the profile's, unless overridden) [US README, P3.4]."""
    arch: str = "resnet18"            # registry name of θ_o's architecture (fvlib.models)
    train: TrainConfig = TrainConfig()  # 160 epochs, lr 0.1, x0.1 at 91/136, batch 256


def retrain(model: nn.Module, data: ImageData, split: Split, cfg: RetrainConfig) -> nn.Module:
    """Train cfg.arch on D_r with cfg.train (cached like θ_o, keyed by the retain mask)."""
    return retrain_cached(model, data, split, cfg)[0]


def retrain_cached(model: nn.Module, data: ImageData, split: Split, cfg: RetrainConfig
                   ) -> tuple[nn.Module, dict]:
    """(Retrain's model, its training info: seconds of the first run, cache_hit)."""
    _check_arch(model, data, cfg.arch)
    return train.train_cached(cfg.arch, data, split.retain, cfg.train, progress=False)


def _check_arch(model: nn.Module, data: ImageData, arch: str) -> None:
    """Fail fast if arch cannot be θ_o's architecture (parameter names/shapes differ)."""
    ref = models.build(arch, data.num_classes, data.spec.mean, data.spec.std)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    if shapes(ref) != shapes(model):
        raise ValueError(f"RetrainConfig(arch={arch!r}) does not match θ_o's state_dict; set arch to "
                         f"θ_o's architecture, one of {', '.join(models.MODELS)}")


def retrain_file(data: ImageData, split: Split, cfg: RetrainConfig) -> Path:
    """Where retrain_cached keeps the model of this split (the θ_o cache)."""
    return train.cache_file(cfg.arch, data, split.retain, cfg.train)


register("retrain", "Retrain", 0, RetrainConfig, retrain, cached=retrain_cached, cached_file=retrain_file,
         default=lambda profile: RetrainConfig(profile.model, profile.train))
