"""CPU reproducibility: a study's class-wise Table 1 (θ_o, Retrain, every baseline, FV) under this
process's CPU settings, in a scratch cache: θ_o's fingerprint, every method's Avg.Gap and its spread.

python benchmarks/cpu_reproducibility.py [PROFILE] [--threads N] [--tag NAME]     (default: smoke)

The thread count and the kernels' instruction set each change CPU numbers (docs: README). The
instruction set is read from the environment when torch starts, so set it on the command line;
the pin fvlib.run gives CPU kernels (fvlib.runtime.cpu_pin_env) is
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 \\
      python benchmarks/cpu_reproducibility.py --threads 1 --tag pinned
Two runs with the same settings on one machine agree exactly: compare the JSONs of two machines
or settings to see how far each method's numbers move.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import metrics, models, study  # noqa: E402

ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def per_trial_gaps(recs) -> dict[str, list[float]]:
    """Avg.Gap (%) of each method and trial against the same trial's Retrain: the spread Table 1 hides."""
    cols = list(metrics.METRICS)
    ref = recs[recs["method"] == "retrain"].set_index("trial")[cols]
    out = {}
    for method, g in recs.groupby("method", sort=False):
        g = g.set_index("trial")[cols]
        out[method] = [round(100 * float(v), 2) for v in (g - ref.loc[g.index]).abs().mean(axis=1)]
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the class-wise study from scratch and write the numbers that move between machines."""
    p = common.parser(__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: as started)")
    p.add_argument("--tag", default=None, help="result name suffix (default: t<threads>-<kernels>)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels = torch.backends.cpu.get_cpu_capability()
    tag = args.tag or f"t{torch.get_num_threads()}-{kernels.lower()}"
    start = time.perf_counter()
    with common.scratch_cache("fvbench-repro-"):
        profile, data = common.load(args.profile)
        model, info = common.theta_o(profile, data)
        recs = common.run_study(profile, data, model, info, "classwise", study.METHOD_ORDER,
                                range(profile.trials))
        fingerprint = models.fingerprint(model)
    summ = study.summary(recs)
    result = {"tag": tag, "threads": torch.get_num_threads(), "kernels": kernels,
              "environment": {k: os.environ.get(k) for k in ENV}, "theta_o_fingerprint": fingerprint,
              "trials": profile.trials, "avg_gap": summ[("gap", "Avg.Gap")].round(2).to_dict(),
              "mean_percent": summ["mean"].round(2).to_dict("index"),
              "per_trial_avg_gap": per_trial_gaps(recs), "seconds": round(time.perf_counter() - start, 1)}
    path = common.write_result(f"cpu_reproducibility-{tag}", profile, data.device, result)
    common.summary("cpu_reproducibility", path, tag=tag, theta_o=fingerprint, **result["avg_gap"])
    return result


if __name__ == "__main__":
    main()
