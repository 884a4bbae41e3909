"""Training speed: images/s, achieved TFLOP/s and test accuracy of the original model θ_o.

python benchmarks/train_speed.py [PROFILE] [EPOCHS]   (default: quick on CUDA, smoke elsewhere)

Trains through `train.train_original`, so in a fresh cache the trained θ_o is stored for the
scripts that follow. When θ_o is already cached its stored timings would be stale, so a fresh model
is trained with `train.fit` instead (nothing cached). Steady-state images/s leave out epoch 1
(warm-up, cuDNN heuristics); TFLOP/s count forward + backward FLOPs of one training image.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import models, train  # noqa: E402


def fresh_fit(profile, data) -> tuple[torch.nn.Module, list[dict]]:
    """Train a new θ_o with train.fit (uncached) and return (model, per-epoch log)."""
    torch.manual_seed(profile.train.seed)
    model = models.build(profile.model, data.num_classes, data.spec.mean, data.spec.std)
    full = torch.ones(len(data.train_y), dtype=torch.bool, device=data.device)
    return train.fit(model, data, full, profile.train, progress=False)


def main(argv: list[str] | None = None) -> dict:
    """Train θ_o once and report its speed and accuracy."""
    p = common.parser(__doc__)
    p.add_argument("epochs", nargs="?", type=int, default=None, help="override the epoch budget")
    args = p.parse_args(argv)
    profile = common.load_profile(args.profile)
    if args.epochs:
        profile = profile.replace(train=dataclasses.replace(profile.train, epochs=args.epochs))
    data = common.config.load_data(profile)
    dev = data.device
    with common.timer(dev) as t:
        model, info = common.theta_o(profile, data)
    log, source = info.get("log") or [], "train_original (fresh cache entry)"
    if info.get("cache_hit"):
        with common.timer(dev) as t:
            model, log = fresh_fit(profile, data)
        source = "train.fit (θ_o was cached; retrained uncached for a fresh timing)"
    steady = log[1:] or log  # epoch 1 includes warm-up / kernel selection
    steady_s = sum(r["seconds"] for r in steady)
    ips = len(data.train_y) * len(steady) / steady_s
    flops = common.train_flops_per_image(model, data.image_shape, data.num_classes, dev)
    test_acc = common.accuracy(model, data.test_x, data.test_y)
    result = {"epochs": profile.train.epochs, "batch_size": profile.train.batch_size,
              "train_images": len(data.train_y), "train_images_per_s": round(ips, 1),
              "total_seconds": round(t["seconds"], 2),
              "epoch1_seconds": round(log[0]["seconds"], 3) if log else None,
              "steady_seconds_per_epoch": round(steady_s / max(len(steady), 1), 3),
              "gflop_per_train_image": round(flops / 1e9, 4),
              "tflops": common.tflops(flops, ips, 1.0),
              "test_acc_percent": round(test_acc, 2), "timing_source": source,
              "epoch_seconds": [round(r["seconds"], 3) for r in log]}
    path = common.write_result("train_speed", profile, dev, result, profile.train)
    common.summary("train_speed", path, profile=profile.name, epochs=result["epochs"],
                   img_per_s=result["train_images_per_s"], tflops=result["tflops"],
                   total_s=result["total_seconds"], test_acc=result["test_acc_percent"],
                   device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
