"""Baseline speed: seconds of one trial of each of the 7 baselines (Retrain, FT, RL, GA, NegGrad+,
SalUn, SCRUB) with the profile's config of each, plus their UA/RA/TA after it.

python benchmarks/baseline_speed.py [PROFILE] [--scenario classwise|random] [--trial I] [--methods a,b]

θ_o comes from fvlib's cache; the baselines run in an empty scratch cache, so Retrain really
trains. An untimed GA run first absorbs CUDA/cuDNN start-up. Images/s and TFLOP/s use the images
each method's epoch plan visits and the FLOPs of one training step per image (SCRUB's teacher
forwards and SalUn's saliency pass are counted in `train_images`, at full training-step cost, so
their TFLOP/s are upper bounds).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import baselines, splits  # noqa: E402

# Cheapest first, Retrain last: a run cut short by a time limit still reports most methods.
METHODS = ("ga", "scrub", "ft", "rl", "neggrad_plus", "salun", "retrain")


def images_visited(method: str, cfg, n_forget: int, n_retain: int) -> int | None:
    """Training images one run of method touches under its config's epoch plan (None if unknown)."""
    both = n_forget + n_retain
    plans = {
        "retrain": lambda: cfg.train.epochs * n_retain,
        "ft": lambda: cfg.epochs * n_retain,
        "rl": lambda: cfg.epochs * both,
        "ga": lambda: cfg.epochs * n_forget,
        "neggrad_plus": lambda: cfg.epochs * both,
        "salun": lambda: n_forget + cfg.epochs * both,
        "scrub": lambda: min(cfg.msteps, cfg.epochs) * n_forget + cfg.epochs * n_retain,
    }
    return plans[method]() if method in plans else None


def main(argv: list[str] | None = None) -> dict:
    """Run each baseline once on one split and time it."""
    p = common.parser(__doc__)
    p.add_argument("--scenario", default="classwise", choices=("classwise", "random"))
    p.add_argument("--trial", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args(argv)
    profile, data = common.load(args.profile)
    dev = data.device
    model, _ = common.theta_o(profile, data)
    cfgs = {name: baselines.get(name).config_for(profile) for name in args.methods.split(",")}
    split = splits.for_trial(data, args.scenario, args.trial, profile.percent)
    nf = int(split.forget.sum())
    nr = len(data.train_y) - nf
    flops = common.train_flops_per_image(model, data.image_shape, data.num_classes, dev)
    result = {"scenario": args.scenario, "trial": args.trial, "forget_images": nf,
              "retain_images": nr, "gflop_per_train_image": round(flops / 1e9, 4),
              "methods": {}, "configs": common.to_jsonable(cfgs)}
    with common.scratch_cache("fvbench-baselines-"):
        baselines.run("ga", model, data, split, baselines.get("ga").config_for(profile))  # warm-up
        for name, cfg in cfgs.items():
            with common.timer(dev) as t:
                new = baselines.run(name, model, data, split, cfg)
            imgs = images_visited(name, cfg, nf, nr)
            row = {"seconds": round(t["seconds"], 2), "train_images": imgs,
                   **common.ua_ra_ta(new, data, split)}
            if imgs:
                row.update(images_per_s=round(imgs / t["seconds"], 1),
                           tflops_upper=common.tflops(flops, imgs, t["seconds"]))
            result["methods"][name] = row
            result["total_seconds"] = round(sum(r["seconds"] for r in result["methods"].values()), 2)
            path = common.write_result("baseline_speed", profile, dev, result, cfgs)
            print(f"{name}: {row}", flush=True)
    common.summary("baseline_speed", path, profile=profile.name, scenario=args.scenario,
                   seconds={k: r["seconds"] for k, r in result["methods"].items()},
                   total_s=result["total_seconds"], device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
