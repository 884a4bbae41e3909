"""Scenario speed: `study.run_study` end to end (8 methods, every trial, MIA included) in a fresh
cache: minutes per scenario, split into method compute and evaluation (UA/RA/TA + SVC MIA).

python benchmarks/scenario_speed.py [PROFILE] [--scenarios classwise,random] [--trials N]
                                    [--methods fv,ga,...] [--budget-seconds S]

θ_o comes from fvlib's cache; the study runs in an empty scratch cache (nothing reused). Methods
run one `run_study` call each (all trials; FV solves them batched, as the study does), FV first,
then the baselines cheapest first. The JSON is rewritten after every method, and with
--budget-seconds no new method starts once the budget is spent, so a cut-short run still reports
what finished. With --trials N < the profile's trials, `est_minutes_all_trials` scales linearly
(an upper bound for FV, whose batched solve grows less than linearly in K on a GPU).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402

ORDER = ("fv", "ga", "scrub", "ft", "rl", "neggrad_plus", "salun", "retrain")


def method_row(df, seconds: float) -> dict:
    """Wall/compute/eval seconds and mean metrics (in %) of one method's records."""
    compute = float(df["seconds"].sum()) if "seconds" in df else math.nan
    row = {"seconds": round(seconds, 2), "compute_seconds": round(compute, 2),
           "eval_seconds": round(seconds - compute, 2), "trials": len(df),
           # GPU-side evaluation as fvlib records it (the SVC fits may overlap other work)
           "recorded_eval_seconds": round(float(df["eval_seconds"].sum()), 2) if "eval_seconds" in df else None,
           "seconds_per_trial": round(seconds / max(len(df), 1), 2)}
    row.update({m: round(100 * float(df[m].mean()), 2) for m in ("UA", "RA", "TA", "MIA") if m in df})
    return row


def scenario_totals(rows: dict, trials_run: int, trials_all: int) -> dict:
    """Minutes measured and the linear estimate for all of the profile's trials."""
    sec = sum(r["seconds"] for r in rows.values())
    ev = sum(r["eval_seconds"] for r in rows.values())
    return {"minutes": round(sec / 60, 2), "eval_minutes": round(ev / 60, 2),
            "est_minutes_all_trials": round(sec * trials_all / max(trials_run, 1) / 60, 2)}


def main(argv: list[str] | None = None) -> dict:
    """Run the study scenario by scenario, method by method, timing each."""
    p = common.parser(__doc__)
    p.add_argument("--scenarios", default="classwise,random")
    p.add_argument("--trials", type=int, default=None, help="first N trials (default: all)")
    p.add_argument("--methods", default=",".join(ORDER))
    p.add_argument("--budget-seconds", type=float, default=None)
    args = p.parse_args(argv)
    start = time.perf_counter()
    profile, data = common.load(args.profile)
    dev = data.device
    model, info = common.theta_o(profile, data)
    trials = list(range(args.trials or profile.trials))
    result = {"trials": trials, "profile_trials": profile.trials, "scenarios": {},
              "complete": False, "budget_seconds": args.budget_seconds}
    path = None
    with common.scratch_cache("fvbench-study-"):
        for sc in args.scenarios.split(","):
            out = result["scenarios"][sc] = {"methods": {}, "skipped": []}
            for m in args.methods.split(","):
                if args.budget_seconds and time.perf_counter() - start > args.budget_seconds:
                    out["skipped"].append(m)
                    continue
                with common.timer(dev) as t:
                    df = common.run_study(profile, data, model, info, sc, [m], trials)
                out["methods"][m] = method_row(df, t["seconds"])
                out.update(scenario_totals(out["methods"], len(trials), profile.trials))
                path = common.write_result("scenario_speed", profile, dev, result)
                print(f"{sc}/{m}: {out['methods'][m]}", flush=True)
    result["complete"] = not any(s["skipped"] for s in result["scenarios"].values())
    path = common.write_result("scenario_speed", profile, dev, result)
    common.summary("scenario_speed", path, profile=profile.name, trials=len(trials),
                   minutes={sc: s.get("minutes", 0.0) for sc, s in result["scenarios"].items()},
                   est_all={sc: s.get("est_minutes_all_trials", 0.0)
                            for sc, s in result["scenarios"].items()},
                   complete=result["complete"], device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
