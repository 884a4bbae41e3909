"""Forget-vector speed: one solve (K = 1) and all classes batched (solve_many): s/epoch and TFLOP/s.

python benchmarks/forget_vector_speed.py [PROFILE] [EPOCHS] [--batched-epochs N] [--k K]
(default: quick on CUDA, smoke elsewhere; EPOCHS defaults to the profile's, e.g. 40)

A 1-epoch K = 1 solve runs first, untimed, so neither timed solve pays CUDA/cuDNN start-up.
Speed needs only a few epochs (s/epoch is flat); UA/RA/TA (in %, no MIA: the SVC is CPU-bound and
not what is timed) are those of the vectors after the epochs run, so they match the paper's
(97.88 / 97.25 / 90.90 on CIFAR-10) only at the full 40 epochs. The JSON is written after each
measurement ("measured": what finished, "complete": all of it), so a timeout keeps the K = 1 result.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import solve, splits  # noqa: E402

PAPER_CIFAR10 = {"UA": 97.88, "RA": 97.25, "TA": 90.90, "MIA": 99.60}


def timed_solve(model, data, split_list, cfg) -> tuple[list, float]:
    """(vectors, seconds) of one solve_many over split_list."""
    with common.timer(data.device) as t:
        vectors = solve.solve_many(model, data, split_list, cfg, progress=False)
    return vectors, t["seconds"]


def _single(model, data, split, cfg, flops: float, full_epochs: int) -> tuple[dict, float]:
    """(the K = 1 solve's seconds, TFLOP/s, class-0 UA/RA/TA; its unrounded s/epoch)."""
    (one,), t1 = timed_solve(model, data, [split], cfg)
    s1, n = t1 / cfg.epochs, len(data.train_y)
    return {"k": 1, "epochs": cfg.epochs, "seconds": round(t1, 2), "seconds_per_epoch": round(s1, 3),
            "tflops": common.tflops(flops, n, s1), "est_seconds_full": round(s1 * full_epochs, 1),
            "class0_percent": common.ua_ra_ta(one.wrap(model), data, split)}, s1


def _batched(model, data, split_list, cfg, flops: float, full_epochs: int, s1: float) -> dict:
    """The K batched solve: seconds, s/epoch, TFLOP/s, speed-up over K singles, UA/RA/TA per class."""
    many, tk = timed_solve(model, data, split_list, cfg)
    k, sk, n = len(split_list), tk / cfg.epochs, len(data.train_y)
    per_class = [common.ua_ra_ta(v.wrap(model), data, s) for s, v in zip(split_list, many)]
    mean = {m: round(float(np.mean([r[m] for r in per_class])), 2) for m in ("UA", "RA", "TA")}
    return {"k": k, "epochs": cfg.epochs, "seconds": round(tk, 2), "seconds_per_epoch": round(sk, 3),
            "tflops": common.tflops(flops, n * k, sk), "speedup_vs_k_singles": round(k * s1 / sk, 2),
            "est_seconds_full": round(sk * full_epochs, 1), "mean_percent": mean,
            "per_class_percent": per_class}


def main(argv: list[str] | None = None) -> dict:
    """Time K = 1 and K batched forget-vector solves on θ_o; the JSON is rewritten (atomically)
    after each measurement, so a run stopped by a timeout keeps what finished ("measured")."""
    p = common.parser(__doc__)
    p.add_argument("epochs", nargs="?", type=int, default=None, help="epochs of the K = 1 solve")
    p.add_argument("--batched-epochs", type=int, default=None, help="epochs of the batched solve")
    p.add_argument("--k", type=int, default=None, help="problems in the batched solve (default: classes)")
    args = p.parse_args(argv)
    profile, data = common.load(args.profile)
    dev = data.device
    model, _ = common.theta_o(profile, data)
    k = args.k or data.num_classes
    cfg1 = dataclasses.replace(profile.fv, epochs=args.epochs or profile.fv.epochs)
    cfgk = dataclasses.replace(profile.fv, epochs=args.batched_epochs or cfg1.epochs)
    all_splits = [splits.classwise(data, c % data.num_classes) for c in range(k)]
    flops = common.delta_flops_per_image(model, data.image_shape, data.num_classes, dev)
    test_acc = common.accuracy(model, data.test_x, data.test_y)
    result = {"batch_size": cfg1.batch_size, "train_images": len(data.train_y),
              "gflop_per_delta_image": round(flops / 1e9, 4), "profile_fv_epochs": profile.fv.epochs,
              "paper_cifar10_percent": PAPER_CIFAR10, "original_TA_percent": round(test_acc, 2),
              "measured": [], "complete": False}
    timed_solve(model, data, all_splits[:1], dataclasses.replace(cfg1, epochs=1))  # warm-up
    result["single"], s1 = _single(model, data, all_splits[0], cfg1, flops, profile.fv.epochs)
    result["measured"].append("single")
    common.write_result("forget_vector_speed", profile, dev, result, cfg1)
    result["batched"] = _batched(model, data, all_splits, cfgk, flops, profile.fv.epochs, s1)
    result["measured"].append("batched")
    result["complete"] = True
    path = common.write_result("forget_vector_speed", profile, dev, result, cfg1)
    b = result["batched"]
    common.summary("forget_vector_speed", path, profile=profile.name,
                   k1_s_per_epoch=s1, k1_tflops=result["single"]["tflops"],
                   **{f"k{k}_s_per_epoch": b["seconds_per_epoch"], f"k{k}_tflops": b["tflops"]},
                   mean_after=b["mean_percent"], device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
