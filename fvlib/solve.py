"""Solving forget vectors (paper Eq. 3-4, reference notes §4) and compositional unlearning (Eq. 5, §5).

One batched loop serves everything: K problems share every shuffled training batch, which is scored
under all K perturbations at once. A problem is (forget mask, parameters -> δ, norm penalty):
  * `solve_many`: K free vectors δ_k (K, 3, H, W)  — e.g. all 10 classes or 10 random splits;
  * `compose`:   K weight vectors w_k over a frozen basis of M vectors, δ_k = Σ_m w_km δ_m (CU-FV).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from fvlib import augment, models
from fvlib.data import ImageData
from fvlib.forget_vector import ForgetVector, stack
from fvlib.provenance import to_jsonable
from fvlib.runtime import autocast, generator, timer
from fvlib.splits import Split
from fvlib.train import batch_indices

# Per-class Beta the authors used for CIFAR-10 class-wise vectors (reference notes §4.2).
CIFAR10_CLASS_BETA = (3.0, 8.0, 4.0, 5.0, 5.0, 6.0, 3.0, 7.0, 4.0, 10.0)
IMAGENET10_CLASS_BETA = (10.0, 5.0, 10.0, 10.0, 5.0, 10.0, 5.0, 10.0, 10.0, 5.0)


@dataclasses.dataclass(frozen=True)
class FVConfig:
    """Forget-vector optimisation. Defaults = the authors' code as run (§4.1, §4.3; decision D4)."""
    objective: str = "code"       # "code": §4.1 batch sums / B (default); "paper": Eq. 4 literally
    epochs: int = 40              # §4.3 "40 iterations" = epochs (fixed; no test-set epoch picking)
    batch_size: int = 256         # §4.3
    lr: float = 0.2               # §4.2 (from the authors' delta paths; not in the paper)
    momentum: float = 0.9         # §4.3
    weight_decay: float = 5e-4    # §4.1: SGD weight decay also pulls on δ
    gamma: float = 0.9            # ExponentialLR factor, stepped once per epoch (§4.3)
    tau: float = 1.0              # margin threshold τ of Eq. 3 (paper; code default 0)
    alpha: float = 1.0            # code form: retain-CE weight (Alpha)
    beta: float = 3.0             # code form: forget-margin weight (Beta; 3 = CIFAR class-wise)
    lambda_norm: float = 1.0      # code form: weight of ‖δ‖₂ / B (Lambda)
    beta_per_class: tuple[float, ...] | None = None  # per-class Beta (e.g. CIFAR10_CLASS_BETA)
    lambda1: float = 3.0          # paper form: retain-CE weight λ1 (3 CIFAR cls, 5 INet cls, 1 random)
    lambda2: float = 1.0          # paper form: weight of ‖δ‖₂² (λ2)
    squared_norm: bool | None = None  # None: unsquared for "code", squared for "paper"
    clamp: bool = False           # clip x + δ to [0, 1] (off: the authors never clamp, D3)
    augment: str | None = None    # training view (None: dataset default, as §1.3)
    seed: int = 1                 # batch order / augmentation (authors' train_seed)

    def betas(self, splits: Sequence[Split]) -> list[float]:
        """Beta of each problem: the per-class table for class-wise splits, else beta."""
        if self.beta_per_class is None:
            return [self.beta] * len(splits)
        return [self.beta_per_class[s.trial] if s.scenario == "classwise" else self.beta
                for s in splits]


@dataclasses.dataclass
class Problem:
    """K stacked optimisation problems: parameters, their δ (K,3,H,W), norm (K,), forget masks (K,N)."""
    params: torch.Tensor
    to_delta: Callable[[torch.Tensor], torch.Tensor]
    forget: torch.Tensor
    betas: torch.Tensor


def margins(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C&W margin z_y − max_{k≠y} z_k for logits z (..., C) and labels y (...)."""
    zy = z.gather(-1, y[..., None]).squeeze(-1)
    other = z.scatter(-1, y[..., None], float("-inf")).amax(-1)
    return zy - other


def batch_loss(z: torch.Tensor, y: torch.Tensor, fmask: torch.Tensor, norm: torch.Tensor,
               betas: torch.Tensor, cfg: FVConfig) -> tuple[torch.Tensor, dict]:
    """Per-problem loss (K,) from logits z (K,B,C), labels y (B,), forget flags (K,B), norms (K,)."""
    b = y.shape[0]
    m = margins(z, y.expand(z.shape[0], b))
    fwd = m.clamp(min=-cfg.tau)                     # Eq. 3: max(margin, −τ)
    ce = nn.functional.cross_entropy(z.transpose(1, 2), y.expand(z.shape[0], b), reduction="none")
    f, r = fmask.float(), (~fmask).float()
    if cfg.objective == "code":                     # §4.1: sums divided by the whole batch size
        l_f, l_r = (f * fwd).sum(1) / b, (r * ce).sum(1) / b
        l_d = norm / b
        loss = cfg.alpha * l_r + betas * l_f + cfg.lambda_norm * l_d
    elif cfg.objective == "paper":                  # Eq. 4: per-side means + λ1 CE + λ2 ‖δ‖²
        l_f = (f * fwd).sum(1) / f.sum(1).clamp(min=1)
        l_r = (r * ce).sum(1) / r.sum(1).clamp(min=1)
        l_d = norm
        loss = l_f + cfg.lambda1 * l_r + cfg.lambda2 * l_d
    else:
        raise ValueError(f"unknown objective {cfg.objective!r}; valid: code, paper")
    at_tau = ((m <= -cfg.tau) & fmask).float().sum(1)
    return loss, {"loss": loss, "l_f": l_f, "l_r": l_r, "l_d": l_d, "at_tau": at_tau,
                  "n_forget": f.sum(1)}


def _norm(params: torch.Tensor, squared: bool) -> torch.Tensor:
    """Per-problem ℓ2 norm (K,) of params (K, ...), squared when asked."""
    n = params.flatten(1).norm(dim=1)
    return n * n if squared else n


def _run(model: nn.Module, data: ImageData, prob: Problem, cfg: FVConfig,
         progress: bool) -> list[dict]:
    """Optimise prob.params in place with SGD + ExponentialLR; returns the per-epoch log."""
    dev = data.device
    squared = cfg.squared_norm if cfg.squared_norm is not None else cfg.objective == "paper"
    opt = torch.optim.SGD([prob.params], lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.gamma)
    g = generator(cfg.seed, "forget-vector", dev)
    aug = augment.get(cfg.augment or augment.DEFAULT_AUGMENT[data.name])
    idx = torch.arange(len(data.train_y), device=dev)
    log = []
    for epoch in tqdm(range(cfg.epochs), desc="forget vector", disable=not progress, leave=False):
        sums = None
        for bidx in batch_indices(idx, cfg.batch_size, g):
            x, y = aug(data.train_x[bidx], g), data.train_y[bidx]
            delta = prob.to_delta(prob.params)                       # (K, 3, H, W)
            xk = x[None] + delta[:, None]                            # (K, B, 3, H, W)
            if cfg.clamp:
                xk = xk.clamp(0, 1)
            with autocast(dev):
                z = model(xk.flatten(0, 1)).float().view(len(delta), len(y), -1)
            loss, parts = batch_loss(z, y, prob.forget[:, bidx], _norm(prob.params, squared),
                                     prob.betas, cfg)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()                                    # problems are independent
            opt.step()
            sums = {k: v.detach() + (sums[k] if sums else 0) for k, v in parts.items()}
        sched.step()
        if not torch.isfinite(sums["loss"]).all():  # checked per epoch: no host sync per step
            raise FloatingPointError(
                f"forget-vector loss became {sums['loss'].cpu().tolist()} in epoch {epoch + 1}; "
                f"lower lr (now {cfg.lr}) or the loss weights, or check the input data.")
        log.append(_epoch_row(epoch, sums, prob, opt))
    return log


def _epoch_row(epoch: int, sums: dict, prob: Problem, opt) -> dict:
    """Per-problem epoch diagnostics: loss terms, ‖δ‖₂, ‖δ‖∞, share of forget samples at −τ."""
    with torch.no_grad():
        delta = prob.to_delta(prob.params)
    row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"]}
    n_forget = sums.pop("n_forget").clamp(min=1)
    row["at_tau"] = (sums.pop("at_tau") / n_forget).tolist()
    row.update({k: v.tolist() for k, v in sums.items()})
    row["delta_l2"] = delta.flatten(1).norm(dim=1).tolist()
    row["delta_linf"] = delta.flatten(1).abs().amax(dim=1).tolist()
    return row


class _Frozen:
    """Context: model in eval mode with parameters frozen; restores both afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.state = ([p.requires_grad for p in self.model.parameters()], self.model.training)
        self.model.eval().requires_grad_(False)
        return self.model

    def __exit__(self, *exc) -> None:
        flags, training = self.state
        for p, f in zip(self.model.parameters(), flags):
            p.requires_grad_(f)
        self.model.train(training)


def _forget_masks(splits: Sequence[Split]) -> torch.Tensor:
    return torch.stack([s.forget for s in splits])


def _meta(model, data, split: Split, cfg, rows: list[dict], k: int, seconds: float, **extra) -> dict:
    last = {key: (v[k] if isinstance(v, list) else v) for key, v in rows[-1].items()}
    return {"dataset": data.name, "model": models.fingerprint(model),
            "forget": {"scenario": split.scenario, "trial": split.trial,
                       "classes": list(split.classes), "hash": split.hash},
            "config": to_jsonable(cfg), "final_epoch": last, "seconds": seconds, **extra}


def solve_many(model: nn.Module, data: ImageData, splits: Sequence[Split], cfg: FVConfig = FVConfig(),
               progress: bool = True) -> list[ForgetVector]:
    """Solve K forget vectors together (one per split), every batch scored under all K δ_k."""
    k = len(splits)
    params = torch.zeros(k, *data.image_shape, device=data.device, requires_grad=True)  # zero init
    prob = Problem(params, lambda p: p, _forget_masks(splits),
                   torch.tensor(cfg.betas(splits), device=data.device))
    with _Frozen(model), timer(data.device) as t:
        log = _run(model, data, prob, cfg, progress)
    return [ForgetVector(params[i].detach().clone(),
                         _meta(model, data, s, cfg, log, i, t["seconds"] / k, log=_column(log, i)))
            for i, s in enumerate(splits)]


def solve(model: nn.Module, data: ImageData, split: Split, cfg: FVConfig = FVConfig(),
          progress: bool = True) -> ForgetVector:
    """One forget vector for one forget set (solve_many with K = 1)."""
    return solve_many(model, data, [split], cfg, progress)[0]


def compose(model: nn.Module, data: ImageData, splits: Sequence[Split], basis: Sequence[ForgetVector],
            cfg: FVConfig = FVConfig(), progress: bool = True) -> list[tuple[ForgetVector, torch.Tensor]]:
    """CU-FV (Eq. 5): learn w ∈ R^M over frozen basis vectors for each split; w initialised at 0.

    The norm term penalises ‖w‖₂ (unsquared, not divided by B in the code form: §5). Returns
    (ForgetVector of Σ w_m δ_m, w (M,)) per split.
    """
    base = stack(list(basis)).to(data.device)                         # (M, 3, H, W)
    w = torch.zeros(len(splits), len(base), device=data.device, requires_grad=True)
    to_delta = lambda p: torch.einsum("km,mchw->kchw", p, base)       # noqa: E731
    prob = Problem(w, to_delta, _forget_masks(splits),
                   torch.tensor(cfg.betas(splits), device=data.device))
    # code form divides the norm by B; §5 adds Lambda·‖w‖ undivided, so pre-multiply by B.
    wcfg = dataclasses.replace(cfg, lambda_norm=cfg.lambda_norm * cfg.batch_size) \
        if cfg.objective == "code" else cfg
    with _Frozen(model), timer(data.device) as t:
        log = _run(model, data, prob, wcfg, progress)
    out = []
    for i, s in enumerate(splits):
        meta = _meta(model, data, s, cfg, log, i, t["seconds"] / len(splits), log=_column(log, i),
                     weights=w[i].tolist(), basis=[b.meta.get("forget") for b in basis])
        out.append((ForgetVector(to_delta(w.detach())[i], meta), w[i].detach().clone()))
    return out


def _column(log: list[dict], k: int) -> list[dict]:
    """Problem k's view of a batched log."""
    return [{key: (v[k] if isinstance(v, list) else v) for key, v in row.items()} for row in log]
