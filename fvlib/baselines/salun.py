"""SalUn: random labelling restricted to the weights most salient for D_f (docs/protocol.md P7)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fvlib.baselines import register
from fvlib.baselines.loop import LoopConfig, Runner, copy_of, neg_ce_loss, random_label_epochs, view
from fvlib.data import ImageData, batch_indices
from fvlib.runtime import autocast, generator
from fvlib.splits import Split


@dataclasses.dataclass(frozen=True)
class SalUnConfig(LoopConfig):
    """SalUn [SAL README, CIFAR-10 10 % random]."""
    lr: float = 0.013                 # [SAL README]
    epochs: int = 10                  # epochs of masked RL [SAL README]
    sparsity: float = 0.5             # fraction of weights KEPT trainable (top |grad|) [SAL with_0.5.pt]
    leaky: bool = False               # True: mask gradients only, so wd/momentum still move masked
    #                                   weights (earlier SAL); False: masked weights frozen (SAL HEAD)


def saliency_mask(model: nn.Module, data: ImageData, split: Split,
                  cfg: SalUnConfig) -> dict[str, torch.Tensor]:
    """{param name: bool mask}: top cfg.sparsity fraction of |Σ_batches ∇(−mean CE on D_f)| at θ_o,
    ranked globally over all parameters (SAL generate_mask: eval mode, augmented view, no update)."""
    net = copy_of(model, data).eval()
    aug, g = view(data, cfg), generator(cfg.seed, "salun-mask", data.device)
    for b in batch_indices(split.forget.nonzero().flatten(), cfg.batch_size, g):
        with autocast(data.device):
            loss = neg_ce_loss(net, aug(data.train_x[b], g), data.train_y[b], b)
        loss.backward()  # gradients accumulate over batches (a sum of per-batch means)
    return top_fraction({n: p.grad.abs() for n, p in net.named_parameters()}, cfg.sparsity)


def top_fraction(scores: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking exactly round(keep·total) largest scores over all tensors together."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"SalUnConfig.sparsity (fraction kept) must be in (0, 1], got {keep}")
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(round(keep * flat.numel())).indices] = True
    parts = chosen.split([s.numel() for s in scores.values()])
    return {n: m.view_as(s) for (n, s), m in zip(scores.items(), parts)}


def salun(model: nn.Module, data: ImageData, split: Split, cfg: SalUnConfig) -> nn.Module:
    """RL with gradients masked to the salient weights. Unless cfg.leaky, masked-out weights are
    restored and their momentum zeroed after each step, so they stay bit-identical to θ_o."""
    mask = saliency_mask(model, data, split, cfg)
    run = Runner(copy_of(model, data), data, cfg, "salun")
    params = dict(run.model.named_parameters())
    pairs = [(params[n], m) for n, m in mask.items()]
    run.opt.register_step_pre_hook(lambda *_: _mask_grads(pairs))  # optimiser-scoped: no model hooks
    if not cfg.leaky:
        frozen = [(p, m, p.detach().clone()) for p, m in pairs]
        run.after_step = lambda: _restore_masked(run.opt, frozen)
    return random_label_epochs(run, split, cfg.epochs)


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


register("salun", "SalUn", 50, SalUnConfig, salun)
