"""θ_o accuracy vs epoch budget, to pick the `quick` recipe's knee: plain CE, one-cycle, several budgets.

python benchmarks/theta_o_curve.py [PROFILE] [--budgets 20,30,40,60] [--budget-seconds 300]
                                   [--ips IMAGES_PER_S] [--label-smoothing 0]

Each budget trains θ_o from scratch with the profile's recipe (one-cycle) but plain CE (label
smoothing 0 unless given) and records training accuracy (non-augmented train set), test accuracy,
seconds and images/s, so a later session can pick the knee. The plan is sized before starting from
--ips (default 45,000 img/s: ResNet-18 at batch 512 measured on one H200; 5,000 on a CPU) and
printed; budgets that would not fit --budget-seconds are dropped, largest first, and the estimate
is re-made with the measured speed after each budget. Smallest budgets run first; the JSON is
rewritten after each, so a run cut short keeps what finished. Models go through fvlib's cache.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import train  # noqa: E402

DEFAULT_BUDGETS = {"smoke": "5,10,15,20"}
FALLBACK_BUDGETS = "20,30,40,60"
EVAL_SECONDS = {"cuda": 3.0, "cpu": 1.0}  # per budget: model build, train+test accuracy, caching


def plan(budgets: list[int], n: int, ips: float, limit: float, overhead: float) -> tuple[list[int], float]:
    """Budgets (ascending) that fit `limit` seconds at `ips`, dropping the largest; and their estimate."""
    keep = sorted(budgets)
    cost = lambda bs: sum(b * n / ips + overhead for b in bs)  # noqa: E731
    while keep and cost(keep) > limit:
        keep.pop()
    return keep, cost(keep)


def main(argv: list[str] | None = None) -> dict:
    """Train θ_o for each epoch budget and record train/test accuracy."""
    p = common.parser(__doc__)
    p.add_argument("--budgets", default=None, help="comma-separated epoch budgets")
    p.add_argument("--budget-seconds", type=float, default=300.0)
    p.add_argument("--ips", type=float, default=None, help="assumed training images/s for the plan")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    profile, data = common.load(args.profile)
    dev = data.device
    n = len(data.train_y)
    asked = [int(b) for b in (args.budgets or DEFAULT_BUDGETS.get(profile.name, FALLBACK_BUDGETS)).split(",")]
    ips = args.ips or (45000.0 if dev.type == "cuda" else 5000.0)
    overhead = EVAL_SECONDS["cuda" if dev.type == "cuda" else "cpu"]
    limit = args.budget_seconds - (time.perf_counter() - start)
    budgets, est = plan(asked, n, ips, limit, overhead)
    print(f"plan: budgets {budgets} of {asked} epochs x {n} images at {ips:.0f} img/s "
          f"-> about {est:.0f} s (limit {limit:.0f} s)", flush=True)
    result = {"asked_budgets": asked, "planned_budgets": budgets, "assumed_images_per_s": ips,
              "estimate_seconds": round(est, 1), "budget_seconds": args.budget_seconds,
              "label_smoothing": args.label_smoothing, "schedule": profile.train.schedule,
              "runs": [], "skipped": sorted(set(asked) - set(budgets))}
    for b in budgets:
        left = args.budget_seconds - (time.perf_counter() - start)
        if b * n / ips + overhead > left:
            result["skipped"].append(b)
            print(f"skip {b} epochs: about {b * n / ips:.0f} s needed, {left:.0f} s left", flush=True)
            continue
        cfg = dataclasses.replace(profile.train, epochs=b, label_smoothing=args.label_smoothing)
        with common.timer(dev) as t:
            model, info = train.train_original(profile.model, data, cfg, progress=False)
        log = info.get("log") or []
        steady = log[1:] or log
        if steady and not info.get("cache_hit"):
            ips = n * len(steady) / sum(r["seconds"] for r in steady)  # re-plan with what we measured
        tr = common.accuracy(model, data.train_x, data.train_y)
        te = common.accuracy(model, data.test_x, data.test_y)
        row = {"epochs": b, "seconds": round(t["seconds"], 2), "images_per_s": round(ips, 1),
               "train_acc_percent": round(tr, 2), "test_acc_percent": round(te, 2),
               "final_train_loss": log[-1].get("loss") if log else None,
               "cache_hit": bool(info.get("cache_hit"))}
        result["runs"].append(row)
        print(f"{b} epochs: {row}", flush=True)
        path = common.write_result("theta_o_curve", profile, dev, result, cfg)
    result["skipped"] = sorted(set(result["skipped"]))
    path = common.write_result("theta_o_curve", profile, dev, result, profile.train)
    common.summary("theta_o_curve", path, profile=profile.name,
                   test_acc={r["epochs"]: r["test_acc_percent"] for r in result["runs"]},
                   train_acc={r["epochs"]: r["train_acc_percent"] for r in result["runs"]},
                   skipped=result["skipped"], device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
