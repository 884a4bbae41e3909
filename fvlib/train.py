"""Training from device-resident uint8 tensors: the original model θ_o and Retrain (P3.3-P3.4).

One shared epoch loop (`run_epoch`) also drives the unlearning baselines. bf16 autocast and
channels_last on CUDA, float32 on CPU. Trained models are cached by config + data + mask hash.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from fvlib import augment, models
from fvlib.cache import cached_tensors, config_hash, tensors_path
from fvlib.data import ImageData, batch_indices
from fvlib.runtime import autocast, generator, prepare_model, timer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """SGD training recipe. Defaults = the paper's original/Retrain recipe (docs/protocol.md P3.3)."""
    epochs: int = 160                 # P3.3: 160 epochs (checkpoint index 159)
    batch_size: int = 256             # P3.3
    lr: float = 0.1                   # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"       # "multistep" (paper: x0.1 at 91, 136) | "onecycle" (fast)
    milestones: tuple[int, ...] = (91, 136)
    gamma: float = 0.1                # multistep decay factor
    warmup_frac: float = 0.2          # onecycle: share of steps spent warming up linearly
    label_smoothing: float = 0.0      # 0 = plain CE as the paper; fast schedule may use 0.1
    nesterov: bool = False
    augment: str | None = None        # None -> dataset default (crop_flip / resized_crop_flip / shift)
    seed: int = 1                     # the authors' --train_seed default


def make_optimizer(params, cfg) -> torch.optim.SGD:
    """SGD with the config's lr, momentum, weight decay (and nesterov when set)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=getattr(cfg, "nesterov", False))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LambdaLR: multistep (epochs) or one-cycle (linear warmup, linear decay to 0)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    # one step: no warm-up (it would be taken at lr 0); the decay never divides by zero
    warm = max(1, int(cfg.warmup_frac * total)) if total > 1 else 0

    def factor(step: int) -> float:
        if cfg.schedule == "multistep":
            epoch = step // steps_per_epoch
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        if cfg.schedule == "onecycle":
            return step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: multistep, onecycle")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def run_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: ImageData, idx: torch.Tensor,
              loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
              batch_size: int, aug: Callable, g: torch.Generator, scheduler=None,
              after_step: Callable[[], None] | None = None) -> dict:
    """One pass over train indices idx: loss_fn(model, x, y, batch_idx) -> scalar, SGD step per batch.

    Returns {'loss': mean loss, 'acc': training accuracy (on augmented views), 'steps'}.
    """
    model.train()
    total_loss = torch.zeros((), device=data.device)
    steps = 0
    for b in batch_indices(idx, batch_size, g):
        x = aug(data.train_x[b], g)
        with autocast(data.device):
            loss = loss_fn(model, x, data.train_y[b], b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.detach().float()
        steps += 1
    mean = (total_loss / max(steps, 1)).item()  # the epoch's one host sync
    if steps and not math.isfinite(mean):
        raise FloatingPointError(f"training loss became {mean} within an epoch of {steps} steps: the "
                                 "model diverged (nothing was cached); lower the learning rate.")
    return {"loss": mean, "steps": steps}


def cross_entropy(label_smoothing: float = 0.0):
    """loss_fn for run_epoch: mean CE of model(x) against y."""
    def loss_fn(model, x, y, _b):
        return nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    return loss_fn


def fit(model: nn.Module, data: ImageData, mask: torch.Tensor, cfg: TrainConfig,
        progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """Train model on the training images where mask is True. Returns (model, per-epoch log)."""
    from fvlib.metrics import accuracy
    dev = data.device
    model = prepare_model(model, dev)
    idx = mask.nonzero().flatten()
    g = generator(cfg.seed, "train", dev)
    aug = augment.get(cfg.augment or data.spec.augment)
    opt = make_optimizer(model.parameters(), cfg)
    sched = make_scheduler(opt, cfg, math.ceil(len(idx) / cfg.batch_size))
    loss_fn = cross_entropy(cfg.label_smoothing)
    log = []
    for epoch in tqdm(range(cfg.epochs), desc="train", disable=not progress, leave=False):
        with timer(dev) as t:
            row = run_epoch(model, opt, data, idx, loss_fn, cfg.batch_size, aug, g, sched)
        log.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **row, "seconds": t["seconds"]})
    # θ_o's fit is part of every table's provenance (a paper-like θ_o fits its training set)
    log[-1]["train_acc"] = accuracy(model, data.train_x[idx], data.train_y[idx])
    log[-1]["test_acc"] = accuracy(model, data.test_x, data.test_y)
    model.eval()
    return model, log


def _key(arch: str, data: ImageData, mask: torch.Tensor, cfg: TrainConfig, model: nn.Module | None = None) -> str:
    """Cache key of a trained model: (arch, its parameter shapes, data fingerprint, mask hash, cfg)."""
    import hashlib
    mask_hash = hashlib.sha256(mask.nonzero().flatten().cpu().numpy().tobytes()).hexdigest()[:16]
    model = model if model is not None else models.build(arch, data.num_classes, data.spec.mean, data.spec.std)
    # the parameter shapes join the key, so editing an architecture never loads stale weights
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    return config_hash("model", arch, shapes, data.fingerprint, mask_hash, cfg)


def cache_file(arch: str, data: ImageData, mask: torch.Tensor, cfg: TrainConfig) -> Path:
    """Where train_cached keeps the model of (arch, data, mask, cfg)."""
    return tensors_path(f"model-{arch}", _key(arch, data, mask, cfg))


def train_cached(arch: str, data: ImageData, mask: torch.Tensor, cfg: TrainConfig,
                 progress: bool = True) -> tuple[nn.Module, dict]:
    """fit() through the cache: key = (arch, data fingerprint, mask hash, cfg). Returns (model, info).

    info has 'log' (per-epoch rows), 'seconds' (training time when computed) and 'cache_hit'.
    """
    model = models.build(arch, data.num_classes, data.spec.mean, data.spec.std)
    key = _key(arch, data, mask, cfg, model)

    def compute():
        torch.manual_seed(cfg.seed)  # weight init
        fresh = models.build(arch, data.num_classes, data.spec.mean, data.spec.std)
        with timer(data.device) as t:
            trained, log = fit(fresh, data, mask, cfg, progress)
        state = {k: v.float() if v.is_floating_point() else v for k, v in trained.state_dict().items()}
        return state, {"log": log, "seconds": t["seconds"], "arch": arch, "key": key}

    state, meta, hit = cached_tensors(f"model-{arch}", key, compute)
    model.load_state_dict(state)
    model = prepare_model(model, data.device).eval()
    return model, {**meta, "cache_hit": hit}


def train_original(arch: str, data: ImageData, cfg: TrainConfig, progress: bool = True):
    """θ_o: trained on the full training set (cached)."""
    full = torch.ones(len(data.train_y), dtype=torch.bool, device=data.device)
    return train_cached(arch, data, full, cfg, progress)
