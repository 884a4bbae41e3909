"""Authors'-style reference forget-vector epoch vs fvlib's `solve`, same θ_o, same process.

python benchmarks/authors_loop.py [PROFILE] [--epochs E] [--workers W] [--eval-every N]

The reference is written the way the authors' code runs (deliberately per-sample and on the CPU):
a torchvision-style Dataset that makes a PIL image per sample, CPU transforms RandomCrop(32, 4) +
RandomHorizontalFlip + ToTensor, a DataLoader with 2 workers (re-spawned every epoch), float32
NCHW model, the code-form objective (Σ retain CE + Beta·Σ forget max(margin, −τ) + Lambda·‖δ‖) / B
with SGD + ExponentialLR on δ, a `loss.item()` per step for logging, and an evaluation pass every
10 epochs (timed once, amortised). fvlib's `solve` runs the same FVConfig on the same split. Both
solve first runs one untimed epoch (CUDA/cuDNN start-up); the reference's steady s/epoch leave
out its epoch 1 when E >= 2.

The reference loop and its objective are deliberately independent of fvlib (only θ_o, the data and
the final scoring are shared): it is the yardstick fvlib's speed is measured against, and a second
implementation of the loss, so sharing fvlib's code would make the comparison circular.
"""
from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import solve, splits  # noqa: E402


class PILImages(torch.utils.data.Dataset):
    """(image, label, is_forget) per index, the image made with PIL and transformed on the CPU."""

    def __init__(self, x: np.ndarray, y: np.ndarray, forget: np.ndarray, transform):
        self.x, self.y, self.forget, self.transform = x, y, forget, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i]), bool(self.forget[i])


def loaders(data, split, batch: int, workers: int, pin: bool):
    """(augmented train loader, plain train loader, plain test loader) in the authors' style."""
    from torchvision import transforms as T
    size = data.image_shape[1]
    aug = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    plain = T.ToTensor()
    x, y = data.train_x.cpu().numpy(), data.train_y.cpu().numpy()
    f = split.forget.cpu().numpy()
    tx, ty = data.test_x.cpu().numpy(), data.test_y.cpu().numpy()
    kw = dict(batch_size=batch, num_workers=workers, pin_memory=pin)
    return (torch.utils.data.DataLoader(PILImages(x, y, f, aug), shuffle=True, **kw),
            torch.utils.data.DataLoader(PILImages(x, y, f, plain), shuffle=False, **kw),
            torch.utils.data.DataLoader(PILImages(tx, ty, np.zeros(len(ty), bool), plain),
                                        shuffle=False, **kw))


def authors_objective(z: torch.Tensor, y: torch.Tensor, is_forget: torch.Tensor, delta: torch.Tensor,
                      beta: float, tau: float, lam: float) -> torch.Tensor:
    """The authors' code-form loss, written independently of fvlib.solve:
    (Σ_retain CE + Beta·Σ_forget max(z_y − max_{k≠y} z_k, −τ) + Lambda·‖δ‖) / B."""
    f = is_forget.float()
    ce = F.cross_entropy(z, y, reduction="none")
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
    forget = (zy - other).clamp(min=-tau)
    return (((1 - f) * ce).sum() + beta * (f * forget).sum() + lam * delta.norm()) / len(y)


def authors_epoch(model, loader, delta, opt, cfg, dev) -> float:
    """One authors'-style δ epoch; returns the mean loss (a host sync per step, as such loops log)."""
    total, steps = 0.0, 0
    for x, y, f in loader:
        x, y, f = x.to(dev, non_blocking=True), y.to(dev), f.to(dev)
        loss = authors_objective(model(x + delta), y, f, delta, cfg.beta, cfg.tau, cfg.lambda_norm)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
    return total / max(steps, 1)


@torch.no_grad()
def authors_eval(model, loader, delta, dev) -> float:
    """One evaluation pass over a loader; returns accuracy (the authors evaluate every 10 epochs)."""
    correct = n = 0
    for x, y, _ in loader:
        z = model(x.to(dev) + delta)
        correct += (z.argmax(1).cpu() == y).sum().item()
        n += len(y)
    return correct / max(n, 1)


def run_authors(model, data, split, cfg, epochs: int, workers: int) -> dict:
    """Authors'-style δ optimisation for `epochs`; per-epoch seconds, one timed eval pass, δ."""
    dev = data.device
    ref = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)
    ref.eval().requires_grad_(False)
    train_l, plain_l, test_l = loaders(data, split, cfg.batch_size, workers, dev.type == "cuda")
    delta = torch.zeros(1, *data.image_shape, device=dev, requires_grad=True)
    opt = torch.optim.SGD([delta], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.gamma)
    secs, losses = [], []
    for epoch in range(epochs):
        with common.timer(dev) as t:
            losses.append(authors_epoch(ref, train_l, delta, opt, cfg, dev))
            sched.step()
        secs.append(t["seconds"])
        print(f"authors epoch {epoch + 1}: {t['seconds']:.2f} s, loss {losses[-1]:.4f}", flush=True)
    with common.timer(dev) as ev:
        acc = (authors_eval(ref, plain_l, delta.detach(), dev), authors_eval(ref, test_l, delta.detach(), dev))
    return {"epoch_seconds": secs, "losses": losses, "eval_pass_seconds": ev["seconds"],
            "eval_train_test_acc": acc, "delta": delta.detach()[0]}


def steady(secs: list[float]) -> float:
    """Mean seconds per epoch leaving out epoch 1 when there are more."""
    rest = secs[1:] or secs
    return sum(rest) / len(rest)


def main(argv: list[str] | None = None) -> dict:
    """Time the authors'-style loop and fvlib's solve for a few epochs each."""
    p = common.parser(__doc__)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--forget-class", type=int, default=0)
    args = p.parse_args(argv)
    profile, data = common.load(args.profile)
    dev = data.device
    model, _ = common.theta_o(profile, data)
    split = splits.classwise(data, args.forget_class)
    cfg = dataclasses.replace(profile.fv, epochs=args.epochs)
    solve.solve(model, data, split, dataclasses.replace(cfg, epochs=1), progress=False)  # warm-up
    ref = run_authors(model, data, split, cfg, args.epochs, args.workers)
    with common.timer(dev) as t:
        fv = solve.solve(model, data, split, cfg, progress=False)
    fv_epoch = t["seconds"] / args.epochs
    a_epoch = steady(ref["epoch_seconds"])
    a_amortised = a_epoch + ref["eval_pass_seconds"] / args.eval_every
    result = {"epochs": args.epochs, "workers": args.workers, "batch_size": cfg.batch_size,
              "forget_class": args.forget_class,
              "authors": {"seconds_per_epoch": round(a_epoch, 3),
                          "seconds_per_epoch_with_eval": round(a_amortised, 3),
                          "epoch_seconds": [round(s, 3) for s in ref["epoch_seconds"]],
                          "eval_pass_seconds": round(ref["eval_pass_seconds"], 3),
                          "losses": ref["losses"], "percent": common.ua_ra_ta(common.with_delta(model, ref["delta"]), data, split)},
              "fvlib_solve": {"seconds_per_epoch": round(fv_epoch, 3),
                        "solve_seconds": round(t["seconds"], 3),
                        "percent": common.ua_ra_ta(fv.wrap(model), data, split)},
              "ratio_authors_over_fvlib": round(a_epoch / fv_epoch, 2),
              "ratio_with_eval": round(a_amortised / fv_epoch, 2),
              "note": "percent = UA/RA/TA after only `epochs` epochs (speed check, not quality)"}
    path = common.write_result("authors_loop", profile, dev, result, cfg)
    common.summary("authors_loop", path, profile=profile.name, authors_s_per_epoch=a_epoch,
                   fvlib_s_per_epoch=fv_epoch, ratio=result["ratio_authors_over_fvlib"],
                   device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
