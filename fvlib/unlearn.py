"""Baseline unlearning methods (docs/protocol.md P3.4, P7, decision D7): Retrain, FT, RL, GA,
NegGrad+, SalUn, SCRUB.

Every method has the signature `(model, data, split, cfg) -> nn.Module` and returns a NEW model
(a deep copy of θ_o, or a fresh Retrain model); the input model is never modified. All optimisation
runs through the shared `train.run_epoch` on the device-resident uint8 tensors, with the dataset's
training augmentation (the authors unlearn on augmented train views, P6) and the model in train
mode (BN statistics update, as the authors' loop). Common loop (P7): SGD, momentum 0.9, wd 5e-4,
batch 256, constant lr (the authors' MultiStepLR at 91/136 never fires within ≤10 epochs).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fvlib import augment, models, train
from fvlib.data import ImageData, batch_indices
from fvlib.runtime import autocast, generator, prepare_model
from fvlib.splits import Split
from fvlib.train import TrainConfig

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
    """Hyperparameters of every baseline. The paper gives none (P10 M13): sources are named per field."""
    arch: str = "resnet18"            # registry name of θ_o's architecture; Retrain rebuilds it (P3.4)
    retrain: TrainConfig = TrainConfig()  # Retrain recipe: 160 ep, lr 0.1, steps 91/136 [US README, P3.4]
    ft_lr: float = 0.01               # FT learning rate [US README]
    ft_epochs: int = 10               # FT epochs over D_r [US README]
    rl_lr: float = 0.01               # RL learning rate [FV/US code default; D7 range 0.01-0.013]
    rl_epochs: int = 10               # RL epochs (each = D_f random-label pass + D_r pass) [code default]
    ga_lr: float = 1e-4               # GA learning rate [US/SAL README]
    ga_epochs: int = 5                # GA epochs over D_f [US/SAL README]
    neggrad_lr: float = 0.01          # NegGrad+ learning rate [FV code default --unlearn_lr, D7]
    neggrad_epochs: int = 10          # NegGrad+ epochs over D_f ∪ D_r [FV code default, D7]
    neggrad_beta: float = 0.999       # retain weight β, forget gets 1-β [Kurmanji et al., whose clean
    #                                   per-side-mean form we use; FV's 0.5 goes with its /n double
    #                                   normalisation; with clean means it collapsed digits (RA≈0.1)]
    salun_lr: float = 0.013           # SalUn learning rate [SAL README, CIFAR-10 10 % random]
    salun_epochs: int = 10            # SalUn epochs of masked RL [SAL README]
    salun_sparsity: float = 0.5       # fraction of weights KEPT trainable (top |grad|) [SAL with_0.5.pt]
    salun_leaky: bool = False         # True: mask gradients only, so wd/momentum still move masked
    #                                   weights (earlier SAL); False: masked weights frozen (SAL HEAD)
    scrub_lr: float = 5e-4            # SCRUB learning rate [sgda_lr declared in FV SCRUB.py, D7]
    scrub_epochs: int = 3             # SCRUB epochs [3 declared in FV SCRUB.py; D7 3-5; Table A1 runtime]
    scrub_msteps: int = 2             # SCRUB: epochs that start with a max-step on D_f [FV/SCRUB default]
    scrub_T: float = 4.0              # SCRUB distillation temperature [SCRUB DistillKL]
    scrub_gamma: float = 0.99         # SCRUB min-step CE weight [FV/SCRUB]
    scrub_alpha: float = 0.001        # SCRUB min-step KL weight [FV/SCRUB]
    batch_size: int = 256             # images per SGD step, all methods [FV arg_parser]
    momentum: float = 0.9             # SGD momentum [FV/US]
    weight_decay: float = 5e-4        # SGD weight decay [FV/US]
    augment: str | None = None        # training view; None -> dataset default (P1.1-P1.2)
    seed: int = 1                     # shuffling / random labels / augmentation [FV --train_seed]

    def scaled(self, factor: float) -> "UnlearnConfig":
        """Copy with every epoch budget (and Retrain's epochs/milestones) times factor, at least 1."""
        shrink = lambda n: max(1, math.ceil(n * factor))  # noqa: E731
        eps = {f.name: shrink(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name.endswith("_epochs")}
        rt = dataclasses.replace(self.retrain, epochs=shrink(self.retrain.epochs),
                                 milestones=tuple(shrink(m) for m in self.retrain.milestones))
        return dataclasses.replace(self, retrain=rt, **eps)


# ----------------------------------------------------------------------------- shared plumbing

def _copy(model: nn.Module, data: ImageData) -> nn.Module:
    """A trainable deep copy of θ_o on the data's device (θ_o itself is never touched)."""
    new = prepare_model(copy.deepcopy(model), data.device)
    for p in new.parameters():
        p.requires_grad_(True)
    return new


def _optimizer(model: nn.Module, cfg: UnlearnConfig, lr: float) -> torch.optim.SGD:
    """SGD with the method's lr and the common momentum / weight decay (P7)."""
    opts = types.SimpleNamespace(lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return train.make_optimizer(model.parameters(), opts)


class _Runner:
    """Binds data, optimiser, augmentation and generator so each method reads as its epoch plan."""

    def __init__(self, model: nn.Module, data: ImageData, cfg: UnlearnConfig, lr: float, name: str):
        self.model, self.data, self.cfg = model, data, cfg
        self.opt = _optimizer(model, cfg, lr)
        self.aug = augment.get(cfg.augment or data.spec.augment)
        self.g = generator(cfg.seed, f"unlearn-{name}", data.device)
        self.after_step: Callable[[], None] | None = None

    def epoch(self, mask: torch.Tensor, loss_fn: LossFn) -> dict:
        """One shuffled pass over the training images where mask (N_train,) is True."""
        idx = mask.nonzero().flatten()
        return train.run_epoch(self.model, self.opt, self.data, idx, loss_fn,
                               self.cfg.batch_size, self.aug, self.g, after_step=self.after_step)


# ----------------------------------------------------------------------------- loss helpers

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


def kl_t(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T))·T², batch mean, of logits (B, C) [SCRUB DistillKL]."""
    log_s = F.log_softmax(student.float() / T, dim=1)
    log_t = F.log_softmax(teacher.float() / T, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * T * T


def scrub_loss(teacher: nn.Module, cfg: UnlearnConfig, max_step: bool) -> LossFn:
    """Max-step: −KL_T on D_f; min-step: γ·CE + α·KL_T on D_r (P7). Teacher is frozen."""
    def loss_fn(model, x, y, _b):
        with torch.no_grad():
            t = teacher(x)
        s = model(x)
        if max_step:
            return -kl_t(s, t, cfg.scrub_T)
        return cfg.scrub_gamma * F.cross_entropy(s, y) + cfg.scrub_alpha * kl_t(s, t, cfg.scrub_T)
    return loss_fn


# ----------------------------------------------------------------------------- methods

def retrain(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """Gold standard: train cfg.arch from scratch on D_r with cfg.retrain (cached; P3.4)."""
    _check_arch(model, data, cfg.arch)
    new, _info = train.train_cached(cfg.arch, data, split.retain, cfg.retrain, progress=False)
    return new


def _check_arch(model: nn.Module, data: ImageData, arch: str) -> None:
    """Fail fast if cfg.arch cannot be θ_o's architecture (parameter names/shapes differ)."""
    ref = models.build(arch, data.num_classes, data.spec.mean, data.spec.std)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    if shapes(ref) != shapes(model):
        raise ValueError(f"cfg.arch={arch!r} does not match the model's state_dict; "
                         f"set UnlearnConfig(arch=...) to one of {', '.join(models.MODELS)}")


def ft(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """Fine-tuning: CE on D_r only (P7)."""
    run = _Runner(_copy(model, data), data, cfg, cfg.ft_lr, "ft")
    for _ in range(cfg.ft_epochs):
        run.epoch(split.retain, ce_loss)
    return run.model.eval()


def ga(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """Gradient ascent: minimise −CE on D_f only (P7)."""
    run = _Runner(_copy(model, data), data, cfg, cfg.ga_lr, "ga")
    for _ in range(cfg.ga_epochs):
        run.epoch(split.forget, neg_ce_loss)
    return run.model.eval()


def _rl_epochs(run: _Runner, split: Split, epochs: int) -> nn.Module:
    """RL schedule: per epoch a random-label pass over D_f, then a true-label pass over D_r (P7)."""
    rand = random_label_loss(run.data.num_classes, generator(run.cfg.seed, "rl-labels", run.data.device))
    for _ in range(epochs):
        run.epoch(split.forget, rand)
        run.epoch(split.retain, ce_loss)
    return run.model.eval()


def rl(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """Random labelling (P7)."""
    return _rl_epochs(_Runner(_copy(model, data), data, cfg, cfg.rl_lr, "rl"), split, cfg.rl_epochs)


def neggrad_plus(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """NegGrad+: shuffled batches from D_f ∪ D_r with the β-weighted two-sided loss (P7)."""
    run = _Runner(_copy(model, data), data, cfg, cfg.neggrad_lr, "neggrad_plus")
    loss_fn = neggrad_plus_loss(split.forget, cfg.neggrad_beta)
    everything = torch.ones_like(split.forget)  # D_f ∪ D_r = the whole training set
    for _ in range(cfg.neggrad_epochs):
        run.epoch(everything, loss_fn)
    return run.model.eval()


def scrub(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """SCRUB: max-steps on D_f for the first msteps epochs, min-step on D_r every epoch (P7)."""
    teacher = _copy(model, data).eval().requires_grad_(False)
    run = _Runner(_copy(model, data), data, cfg, cfg.scrub_lr, "scrub")
    for epoch in range(cfg.scrub_epochs):
        if epoch < cfg.scrub_msteps:
            run.epoch(split.forget, scrub_loss(teacher, cfg, max_step=True))
        run.epoch(split.retain, scrub_loss(teacher, cfg, max_step=False))
    return run.model.eval()


# ----------------------------------------------------------------------------- SalUn

def saliency_mask(model: nn.Module, data: ImageData, split: Split,
                  cfg: UnlearnConfig) -> dict[str, torch.Tensor]:
    """{param name: bool mask}: top salun_sparsity fraction of |Σ_batches ∇(−mean CE on D_f)| at θ_o,
    ranked globally over all parameters (SAL generate_mask: eval mode, augmented view, no update)."""
    net = _copy(model, data).eval()
    aug = augment.get(cfg.augment or data.spec.augment)
    g = generator(cfg.seed, "salun-mask", data.device)
    for b in batch_indices(split.forget.nonzero().flatten(), cfg.batch_size, g):
        with autocast(data.device):
            loss = neg_ce_loss(net, aug(data.train_x[b], g), data.train_y[b], b)
        loss.backward()  # gradients accumulate over batches (a sum of per-batch means)
    return _top_fraction({n: p.grad.abs() for n, p in net.named_parameters()}, cfg.salun_sparsity)


def _top_fraction(scores: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking exactly round(keep·total) largest scores over all tensors together."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"salun_sparsity (fraction kept) must be in (0, 1], got {keep}")
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(round(keep * flat.numel())).indices] = True
    parts = chosen.split([s.numel() for s in scores.values()])
    return {n: m.view_as(s) for (n, s), m in zip(scores.items(), parts)}


def salun(model: nn.Module, data: ImageData, split: Split, cfg: UnlearnConfig) -> nn.Module:
    """SalUn: RL with gradients masked to the salient weights (P7). Unless salun_leaky, masked-out
    weights are restored and their momentum zeroed after each step, so they stay bit-identical."""
    mask = saliency_mask(model, data, split, cfg)
    run = _Runner(_copy(model, data), data, cfg, cfg.salun_lr, "salun")
    params = dict(run.model.named_parameters())
    pairs = [(params[n], m) for n, m in mask.items()]
    run.opt.register_step_pre_hook(lambda *_: _mask_grads(pairs))  # optimiser-scoped: no model hooks
    if not cfg.salun_leaky:
        frozen = [(p, m, p.detach().clone()) for p, m in pairs]
        run.after_step = lambda: _restore_masked(run.opt, frozen)
    return _rl_epochs(run, split, cfg.salun_epochs)


@torch.no_grad()
def _mask_grads(pairs: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
    """grad ← grad · mask before the optimiser step (the SAL update rule)."""
    for p, m in pairs:
        if p.grad is not None:
            p.grad.mul_(m)


@torch.no_grad()
def _restore_masked(opt: torch.optim.Optimizer, frozen: list[tuple]) -> None:
    """Undo weight decay on masked-out weights: reset them to θ_o and zero their momentum."""
    for p, m, p0 in frozen:
        p.copy_(torch.where(m, p, p0))
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            buf.mul_(m)


# ----------------------------------------------------------------------------- registry

Method = Callable[[nn.Module, ImageData, Split, UnlearnConfig], nn.Module]

METHODS: dict[str, Method] = {
    "retrain": retrain, "ft": ft, "rl": rl, "ga": ga,
    "neggrad_plus": neggrad_plus, "salun": salun, "scrub": scrub,
}


def get(name: str) -> Method:
    """Method by name; unknown names list the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r}; valid names: {', '.join(METHODS)}")
    return METHODS[name]


def run(name: str, model: nn.Module, data: ImageData, split: Split,
        cfg: UnlearnConfig = UnlearnConfig()) -> nn.Module:
    """Apply method `name` to θ_o; returns a new unlearned model in eval mode."""
    method = get(name)
    split.check(data)
    return method(model, data, split, cfg)
