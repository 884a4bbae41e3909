"""Forget-vector speed: one solve (K = 1) and all classes batched (solve_many), plus their quality.

python benchmarks/forget_vector_speed.py [PROFILE] [EPOCHS]  (default: quick on CUDA, smoke on CPU)
Writes benchmarks/results/forget_vector_speed-<profile>-<device>.json with seconds, UA/RA/TA/MIA
per class and the mean next to the paper's (97.88 / 97.25 / 90.90 / 99.60 on CIFAR-10).
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

from fvlib import config, metrics, splits, solve, train
from fvlib.cache import write_json
from fvlib.paths import ROOT
from fvlib.provenance import provenance
from fvlib.runtime import pick_device, timer


def main(profile_name: str, epochs: int | None) -> dict:
    profile = config.get_profile(profile_name)
    cfg = dataclasses.replace(profile.fv, epochs=epochs) if epochs else profile.fv
    data = config.load_data(profile)
    original, _ = train.train_original(profile.model, data, profile.train)
    all_splits = [splits.classwise(data, k) for k in range(data.num_classes)]
    with timer(data.device) as one:
        solve.solve(original, data, all_splits[0], cfg, progress=False)
    with timer(data.device) as many:
        vectors = solve.solve_many(original, data, all_splits, cfg, progress=False)
    per_class = [metrics.evaluate(original, data, s, v.delta, batch_size=profile.eval_batch_size)
                 for s, v in zip(all_splits, vectors)]
    mean = {k: float(np.mean([r[k] for r in per_class]) * 100) for k in ("UA", "RA", "TA", "MIA")}
    result = {"profile": profile.name, "dataset": data.name, "model": profile.model,
              "epochs": cfg.epochs, "batch_size": cfg.batch_size,
              "solve_seconds": round(one["seconds"], 2),
              "solve_many_seconds": round(many["seconds"], 2), "classes": data.num_classes,
              "mean_percent": mean, "paper_cifar10_percent": {"UA": 97.88, "RA": 97.25, "TA": 90.90, "MIA": 99.60},
              "original_TA_percent": 100 * metrics.accuracy(original, data.test_x, data.test_y),
              "per_class": per_class, **provenance(cfg, data.device)}
    dev = "cuda" if data.device.type == "cuda" else "cpu"
    write_json(ROOT / "benchmarks" / "results" / f"forget_vector_speed-{profile.name}-{dev}.json", result)
    return result


if __name__ == "__main__":
    default = "quick" if pick_device().type == "cuda" else "smoke"
    args = sys.argv[1:]
    res = main(args[0] if args else default, int(args[1]) if len(args) > 1 else None)
    print({k: res[k] for k in ("profile", "epochs", "solve_seconds", "solve_many_seconds", "mean_percent", "device")})
