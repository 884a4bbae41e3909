"""Solving forget vectors (paper Eq. 3-4, docs/protocol.md P4) and compositional unlearning (Eq. 5, P5).

One batched loop serves everything: K problems share every shuffled training batch, which is scored
under all K perturbations at once. A problem is (forget mask, parameters -> δ, norm penalty):
  * `solve_many`: K free vectors δ_k (K, 3, H, W)  — e.g. all 10 classes or 10 random splits;
  * `compose`:   K weight vectors w_k over a frozen basis of M vectors, δ_k = Σ_m w_km δ_m (CU-FV).
The loss is one of the named objectives in OBJECTIVES (the code form, the paper's Eq. 4, ...).
Options beyond the paper: distillation targets from θ_o ("distill"), projected steps onto a ball.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from fvlib import augment, models
from fvlib.data import ImageData, batch_indices, to_float
from fvlib.forget_vector import ForgetVector, perturb, stack
from fvlib.provenance import to_jsonable
from fvlib.runtime import autocast, generator, timer
from fvlib.splits import Split

BALLS = ("l2", "linf")
DISTILL_TARGETS = ("view", "unaugmented")


@dataclasses.dataclass(frozen=True)
class FVConfig:
    """Forget-vector optimisation. Defaults = the authors' code as run (P4.1, P4.3; decision D4)."""
    objective: str = "code"       # a name in OBJECTIVES: "code" (default), "paper" (Eq. 4), "distill"
    epochs: int = 40              # P4.3 "40 iterations" = epochs (fixed; no test-set epoch picking)
    batch_size: int = 256         # P4.3
    lr: float = 0.2               # P4.2 (from the authors' delta paths; not in the paper)
    momentum: float = 0.9         # P4.3
    weight_decay: float = 5e-4    # P4.1: SGD weight decay also pulls on δ
    gamma: float = 0.9            # ExponentialLR factor, stepped once per epoch (P4.3)
    tau: float = 1.0              # margin threshold τ of Eq. 3 (paper; code default 0)
    alpha: float = 1.0            # code form: retain-CE weight (Alpha)
    beta: float = 3.0             # code form: forget-margin weight (Beta; 3 = CIFAR class-wise)
    lambda_norm: float = 1.0      # code form: weight of ‖δ‖₂ / B (Lambda)
    beta_per_class: tuple[float, ...] | None = None  # per-class Beta, by class index (P4.2 tables)
    lambda1: float = 3.0          # paper form: retain-CE weight λ1 (3 CIFAR cls, 5 INet cls, 1 random)
    lambda2: float = 1.0          # paper form: weight of ‖δ‖₂² (λ2)
    squared_norm: bool | None = None  # None: unsquared for "code"/"distill", squared for "paper"
    temperature: float = 1.0      # distill: softmax temperature of the KL to θ_o's predictions
    distill_targets: str = "view"  # distill: θ_o on the same augmented view ("view", +1 forward per
                                   # step) or on the un-augmented image, computed once ("unaugmented")
    radius: float | None = None   # projected steps: after each step δ is projected onto this ball
    ball: str = "l2"              # the ball of `radius`: "l2" (‖δ‖₂ ≤ r) or "linf" (|δ| ≤ r per pixel)
    clamp: bool = False           # clip x + δ to [0, 1] (off: the authors never clamp, D3)
    augment: str | None = None    # training view (None: dataset default, as P1.3)
    seed: int = 1                 # batch order / augmentation (authors' train_seed)

    def betas(self, splits: Sequence[Split]) -> list[float]:
        """Beta of each problem: the per-class table for class-wise splits, else beta."""
        if self.beta_per_class is None:
            return [self.beta] * len(splits)
        return [self.beta_per_class[s.trial] if s.scenario == "classwise" else self.beta
                for s in splits]

    def check(self) -> "FVConfig":
        """Raise ValueError for settings that cannot run (unknown objective, no epochs, ...)."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.radius is not None and not self.radius > 0:
            raise ValueError(f"radius must be > 0 (or None: no projection), got {self.radius}")
        if self.ball not in BALLS:
            raise ValueError(f"unknown ball {self.ball!r}; valid: {', '.join(BALLS)}")
        if self.distill_targets not in DISTILL_TARGETS:
            raise ValueError(f"unknown distill_targets {self.distill_targets!r}; valid: {', '.join(DISTILL_TARGETS)}")
        return self


# ----------------------------------------------------------------------------- objectives

class Terms(NamedTuple):
    """Per-sample ingredients of one batch for K problems: margins, CE (K, B), flags (K, B), norms (K,)."""
    margin: torch.Tensor
    ce: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    norm: torch.Tensor
    distill: torch.Tensor | None  # KL to θ_o's predictions without δ (K, B); only for "distill"


Objective = Callable[[Terms, torch.Tensor, FVConfig], tuple[torch.Tensor, ...]]


def code_objective(t: Terms, betas: torch.Tensor, cfg: FVConfig) -> tuple[torch.Tensor, ...]:
    """P4.1: Alpha·ΣCE_r/B + Beta·Σmax(m, −τ)_f/B + Lambda·‖δ‖/B (sums over the whole batch / B)."""
    b = t.margin.shape[1]
    l_f = (t.forget * t.margin.clamp(min=-cfg.tau)).sum(1) / b
    l_r, l_d = (t.retain * t.ce).sum(1) / b, t.norm / b
    return cfg.alpha * l_r + betas * l_f + cfg.lambda_norm * l_d, l_f, l_r, l_d


def paper_objective(t: Terms, betas: torch.Tensor, cfg: FVConfig) -> tuple[torch.Tensor, ...]:
    """Eq. 4 literally: mean_f max(m, −τ) + λ1·mean_r CE + λ2·‖δ‖² (per-side means)."""
    l_f = (t.forget * t.margin.clamp(min=-cfg.tau)).sum(1) / t.forget.sum(1).clamp(min=1)
    l_r = (t.retain * t.ce).sum(1) / t.retain.sum(1).clamp(min=1)
    return l_f + cfg.lambda1 * l_r + cfg.lambda2 * t.norm, l_f, l_r, t.norm


def distill_objective(t: Terms, betas: torch.Tensor, cfg: FVConfig) -> tuple[torch.Tensor, ...]:
    """Code form with the retain CE replaced by the KL to θ_o's own predictions without δ (an option):
    δ is asked to keep what θ_o says on D_r, not to fit the labels θ_o itself gets wrong."""
    return code_objective(t._replace(ce=t.distill), betas, cfg)


OBJECTIVES: dict[str, Objective] = {"code": code_objective, "paper": paper_objective,
                                    "distill": distill_objective}


def margins(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C&W margin z_y − max_{k≠y} z_k for logits z (..., C) and labels y (...)."""
    zy = z.gather(-1, y[..., None]).squeeze(-1)
    other = z.scatter(-1, y[..., None], float("-inf")).amax(-1)
    return zy - other


def _kl(z: torch.Tensor, z0: torch.Tensor, temp: float) -> torch.Tensor:
    """Per-sample KL(softmax(z0/T) ‖ softmax(z/T))·T² for logits z (K, B, C) and z0 (B, C)."""
    logp, logq = (z0[None] / temp).log_softmax(-1), (z / temp).log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1) * temp * temp


def batch_loss(z: torch.Tensor, y: torch.Tensor, fmask: torch.Tensor, norm: torch.Tensor,
               betas: torch.Tensor, cfg: FVConfig, z0: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict]:
    """Per-problem loss (K,) from logits z (K,B,C), labels y (B,), forget flags (K,B), norms (K,).

    z0 (B, C): θ_o's logits on the batch without δ, needed by the "distill" objective only.
    """
    k, b = z.shape[:2]
    yk = y.expand(k, b)
    m = margins(z, yk)
    ce = nn.functional.cross_entropy(z.transpose(1, 2), yk, reduction="none")
    kl = _kl(z, z0, cfg.temperature) if z0 is not None else None
    terms = Terms(m, ce, fmask.float(), (~fmask).float(), norm, kl)
    loss, l_f, l_r, l_d = OBJECTIVES[cfg.objective](terms, betas, cfg)
    at_tau = ((m <= -cfg.tau) & fmask).float().sum(1)
    return loss, {"loss": loss, "l_f": l_f, "l_r": l_r, "l_d": l_d, "at_tau": at_tau,
                  "n_forget": terms.forget.sum(1)}


# ----------------------------------------------------------------------------- the loop

@dataclasses.dataclass
class Problem:
    """K stacked optimisation problems: parameters, their δ (K,3,H,W), norm (K,), forget masks (K,N)."""
    params: torch.Tensor
    to_delta: Callable[[torch.Tensor], torch.Tensor]
    forget: torch.Tensor
    betas: torch.Tensor


def _norm(params: torch.Tensor, squared: bool) -> torch.Tensor:
    """Per-problem ℓ2 norm (K,) of params (K, ...), squared when asked."""
    n = params.flatten(1).norm(dim=1)
    return n * n if squared else n


def project(params: torch.Tensor, radius: float, ball: str) -> torch.Tensor:
    """Each of the K perturbations (K, 3, H, W) projected onto the ℓ2 or ℓ∞ ball of the radius."""
    if ball == "linf":
        return params.clamp(-radius, radius)
    norm = params.flatten(1).norm(dim=1).clamp(min=1e-12)
    return params * (radius / norm).clamp(max=1.0).view(-1, *([1] * (params.dim() - 1)))


def unaugmented_logits(model: nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """θ_o's logits (N, C) on every un-augmented training image (the "unaugmented" distillation targets)."""
    out = []
    with torch.no_grad(), autocast(data.device):
        for x in data.train_x.split(batch_size):
            out.append(model(to_float(x)).float())
    return torch.cat(out)


def _step_logits(model: nn.Module, x: torch.Tensor, delta: torch.Tensor, cfg: FVConfig) -> torch.Tensor:
    """Logits (K, B, C) of the batch x (B, 3, H, W) under each of the K perturbations δ (K, 3, H, W)."""
    xk = perturb(x[None], delta[:, None], cfg.clamp)                   # (K, B, 3, H, W)
    with autocast(x.device):
        return model(xk.flatten(0, 1)).float().view(len(delta), len(x), -1)


def _run(model: nn.Module, data: ImageData, prob: Problem, cfg: FVConfig,
         progress: bool) -> list[dict]:
    """Optimise prob.params in place with SGD + ExponentialLR; returns the per-epoch log."""
    dev = data.device
    squared = cfg.squared_norm if cfg.squared_norm is not None else cfg.objective == "paper"
    opt = torch.optim.SGD([prob.params], lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.gamma)
    g = generator(cfg.seed, "forget-vector", dev)
    aug = augment.get(cfg.augment or data.spec.augment)
    idx = torch.arange(len(data.train_y), device=dev)
    distill = cfg.objective == "distill"
    targets = unaugmented_logits(model, data) if distill and cfg.distill_targets == "unaugmented" else None
    log = []
    for epoch in tqdm(range(cfg.epochs), desc="forget vector", disable=not progress, leave=False):
        sums = None
        for bidx in batch_indices(idx, cfg.batch_size, g):
            x, y = aug(data.train_x[bidx], g), data.train_y[bidx]
            z = _step_logits(model, x, prob.to_delta(prob.params), cfg)
            z0 = None
            if targets is not None:
                z0 = targets[bidx]
            elif distill:  # θ_o's prediction of the unperturbed view is the retain target
                with torch.no_grad(), autocast(dev):
                    z0 = model(x).float()
            loss, parts = batch_loss(z, y, prob.forget[:, bidx], _norm(prob.params, squared),
                                     prob.betas, cfg, z0)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()                                    # problems are independent
            opt.step()
            if cfg.radius is not None:  # projected step: δ stays inside the ball
                with torch.no_grad():
                    prob.params.copy_(project(prob.params, cfg.radius, cfg.ball))
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


def _problems(data: ImageData, splits: Sequence[Split], cfg: FVConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (forget masks (K, N), Betas (K,)) of K splits of `data`."""
    cfg.check()
    if not splits:
        raise ValueError("no forget sets given: pass at least one Split (e.g. splits.classwise(data, 0))")
    for s in splits:
        s.check(data)
    return torch.stack([s.forget for s in splits]), torch.tensor(cfg.betas(splits), device=data.device)


def _meta(fingerprint: str, data, split: Split, cfg, rows: list[dict], k: int, seconds: float, n: int,
          **extra) -> dict:
    """A solved vector's metadata: data, θ_o's fingerprint, forget set, config, cost, last epoch."""
    last = _column(rows[-1:], k)[0]
    return {"dataset": data.name, "model": fingerprint, "clamp": cfg.clamp,
            "forget": {"scenario": split.scenario, "trial": split.trial,
                       "classes": list(split.classes), "hash": split.hash},
            "config": to_jsonable(cfg), "final_epoch": last,
            # wall time of the whole solve, and its share per vector when K were solved together
            "solve_seconds": seconds, "solved_together": n, "seconds": seconds / n, **extra}


def solve_many(model: nn.Module, data: ImageData, splits: Sequence[Split], cfg: FVConfig = FVConfig(),
               progress: bool = True, fingerprint: str | None = None) -> list[ForgetVector]:
    """Solve K forget vectors together (one per split), every batch scored under all K δ_k.

    fingerprint: θ_o's models.fingerprint when the caller holds it (else hashed once here)."""
    forget, betas = _problems(data, splits, cfg)
    fingerprint = fingerprint or models.fingerprint(model)
    params = torch.zeros(len(splits), *data.image_shape, device=data.device, requires_grad=True)
    prob = Problem(params, lambda p: p, forget, betas)                           # zero init
    with models.frozen(model), timer(data.device) as t:
        log = _run(model, data, prob, cfg, progress)
    return [ForgetVector(params[i].detach().clone(),
                         _meta(fingerprint, data, s, cfg, log, i, t["seconds"], len(splits), log=_column(log, i)))
            for i, s in enumerate(splits)]


def solve(model: nn.Module, data: ImageData, split: Split, cfg: FVConfig = FVConfig(),
          progress: bool = True, fingerprint: str | None = None) -> ForgetVector:
    """One forget vector for one forget set (solve_many with K = 1)."""
    return solve_many(model, data, [split], cfg, progress, fingerprint)[0]


def compose(model: nn.Module, data: ImageData, splits: Sequence[Split], basis: Sequence[ForgetVector],
            cfg: FVConfig = FVConfig(), progress: bool = True,
            fingerprint: str | None = None) -> list[tuple[ForgetVector, torch.Tensor]]:
    """CU-FV (Eq. 5): learn w ∈ R^M over frozen basis vectors for each split; w initialised at 0.

    The norm term penalises ‖w‖₂ (unsquared, not divided by B in the code form: P5). Returns
    (ForgetVector of Σ w_m δ_m, w (M,)) per split.
    """
    forget, betas = _problems(data, splits, cfg)
    fingerprint = fingerprint or models.fingerprint(model)
    if not basis:
        raise ValueError("compose needs at least one basis vector")
    if cfg.radius is not None:
        raise ValueError("compose learns weights over a basis, not δ itself: a radius (projected δ) "
                         "does not apply; pass a config with radius=None")
    base = stack(list(basis)).to(data.device)                         # (M, 3, H, W)
    w = torch.zeros(len(splits), len(base), device=data.device, requires_grad=True)
    to_delta = lambda p: torch.einsum("km,mchw->kchw", p, base)       # noqa: E731
    prob = Problem(w, to_delta, forget, betas)
    # code form divides the norm by B; P5 adds Lambda·‖w‖ undivided, so pre-multiply by B.
    wcfg = dataclasses.replace(cfg, lambda_norm=cfg.lambda_norm * cfg.batch_size) \
        if cfg.objective != "paper" else cfg
    with models.frozen(model), timer(data.device) as t:
        log = _run(model, data, prob, wcfg, progress)
    out = []
    for i, s in enumerate(splits):
        meta = _meta(fingerprint, data, s, cfg, log, i, t["seconds"], len(splits), log=_column(log, i),
                     weights=w[i].tolist(), basis=[b.meta.get("forget") for b in basis])
        out.append((ForgetVector(to_delta(w.detach())[i], meta), w[i].detach().clone()))
    return out


def _column(log: list[dict], k: int) -> list[dict]:
    """Problem k's view of a batched log."""
    return [{key: (v[k] if isinstance(v, list) else v) for key, v in row.items()} for row in log]
