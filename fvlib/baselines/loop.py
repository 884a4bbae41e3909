"""What every baseline shares (docs/protocol.md P7): the SGD loop config, a runner bound to the
data, and the loss helpers. All optimisation goes through `train.run_epoch` on the device-resident
uint8 tensors with the dataset's training augmentation (the authors unlearn on augmented views, P6)
and the model in train mode (BN statistics update, as in the authors' loop)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fvlib import augment, train
from fvlib.data import ImageData
from fvlib.runtime import generator, prepare_model
from fvlib.splits import Split

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """SGD, momentum 0.9, wd 5e-4, batch 256, constant lr (the authors' MultiStepLR at 91/136 never
    fires within ≤ 10 epochs). Each method's config subclasses this with its own lr and epochs."""
    lr: float = 0.01                  # learning rate
    epochs: int = 10                  # passes (the method says over what)
    batch_size: int = 256             # images per SGD step [FV arg_parser]
    momentum: float = 0.9             # SGD momentum [FV/US]
    weight_decay: float = 5e-4        # SGD weight decay [FV/US]
    augment: str | None = None        # training view; None: the dataset's default (P1.1-P1.2)
    seed: int = 1                     # shuffling / random labels / augmentation [FV --train_seed]


def copy_of(model: nn.Module, data: ImageData) -> nn.Module:
    """A trainable deep copy of θ_o on the data's device (θ_o itself is never touched)."""
    new = prepare_model(copy.deepcopy(model), data.device)
    for p in new.parameters():
        p.requires_grad_(True)
    return new


def view(data: ImageData, cfg: LoopConfig) -> Callable:
    """The training augmentation of cfg, else the dataset's default."""
    return augment.get(cfg.augment or data.spec.augment)


class Runner:
    """Binds data, optimiser, augmentation and generator so each method reads as its epoch plan."""

    def __init__(self, model: nn.Module, data: ImageData, cfg: LoopConfig, name: str):
        self.model, self.data, self.cfg = model, data, cfg
        self.opt = train.make_optimizer(model.parameters(), cfg)
        self.aug = view(data, cfg)
        self.g = generator(cfg.seed, f"unlearn-{name}", data.device)
        self.after_step: Callable[[], None] | None = None

    def epoch(self, mask: torch.Tensor, loss_fn: LossFn) -> dict:
        """One shuffled pass over the training images where mask (N_train,) is True."""
        idx = mask.nonzero().flatten()
        return train.run_epoch(self.model, self.opt, self.data, idx, loss_fn,
                               self.cfg.batch_size, self.aug, self.g, after_step=self.after_step)


def ce_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, _b: torch.Tensor) -> torch.Tensor:
    """Mean CE of model(x (B,3,H,W)) against y (B,)."""
    return F.cross_entropy(model(x), y)


def neg_ce_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, _b: torch.Tensor) -> torch.Tensor:
    """−mean CE: gradient ascent on the forget set (GA, SalUn saliency)."""
    return -F.cross_entropy(model(x), y)


def random_label_loss(num_classes: int, g: torch.Generator) -> LossFn:
    """CE against labels drawn uniformly from {0..C-1} per batch (may equal the true label; RL P7)."""
    def loss_fn(model, x, y, _b):
        fake = torch.randint(0, num_classes, y.shape, generator=g, device=g.device).to(y.device)
        return F.cross_entropy(model(x), fake)
    return loss_fn


def random_label_epochs(run: Runner, split: Split, epochs: int) -> nn.Module:
    """RL schedule: per epoch a random-label pass over D_f, then a true-label pass over D_r (P7)."""
    rand = random_label_loss(run.data.num_classes, generator(run.cfg.seed, "rl-labels", run.data.device))
    for _ in range(epochs):
        run.epoch(split.forget, rand)
        run.epoch(split.retain, ce_loss)
    return run.model.eval()
