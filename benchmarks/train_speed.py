"""Training speed: images/s and time-to-accuracy of the original model on the current device.

python benchmarks/train_speed.py [PROFILE] [EPOCHS]   (default: quick on CUDA, smoke on CPU)
Writes benchmarks/results/train_speed-<profile>-<device>.json.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from fvlib import config, metrics, models, train
from fvlib.cache import write_json
from fvlib.paths import ROOT
from fvlib.provenance import provenance
from fvlib.runtime import pick_device


def main(profile_name: str, epochs: int | None) -> dict:
    profile = config.get_profile(profile_name)
    if epochs:
        profile = profile.replace(train=dataclasses.replace(profile.train, epochs=epochs))
    data = config.load_data(profile)
    torch.manual_seed(profile.train.seed)
    model = models.build(profile.model, data.num_classes, data.spec.mean, data.spec.std)
    full = torch.ones(len(data.train_y), dtype=torch.bool, device=data.device)
    start = time.perf_counter()
    model, log = train.fit(model, data, full, profile.train, progress=False)
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    acc = metrics.accuracy(model, data.test_x, data.test_y)
    steady = log[1:] or log  # epoch 1 includes warm-up / kernel selection
    ips = len(data.train_y) * len(steady) / sum(r["seconds"] for r in steady)
    result = {"profile": profile.name, "dataset": data.name, "model": profile.model,
              "epochs": profile.train.epochs, "train_images_per_s": round(ips, 1),
              "total_seconds": round(seconds, 2), "test_acc": acc,
              **provenance(profile.train, data.device)}
    dev = "cuda" if data.device.type == "cuda" else "cpu"
    write_json(ROOT / "benchmarks" / "results" / f"train_speed-{profile.name}-{dev}.json", result)
    return result


if __name__ == "__main__":
    default = "quick" if pick_device().type == "cuda" else "smoke"
    args = sys.argv[1:]
    res = main(args[0] if args else default, int(args[1]) if len(args) > 1 else None)
    print({k: res[k] for k in ("profile", "epochs", "train_images_per_s", "total_seconds", "test_acc", "device")})
