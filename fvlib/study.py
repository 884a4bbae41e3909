"""Table 1 / A1: every method on the same splits -> cached, resumable records -> tables.

Trial i uses the same split for every method (class-wise: class i; random: seed i). Records live
in the one record store (fvlib.records, kind "study"); the forget vector ("fv") is one of the
methods, and its vectors for all missing trials are solved in one batched pass. On a GPU the MIA's
SVC fits run in a process pool while the GPU goes on with the next system.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from fvlib import labels, metrics, mia, records, solve
from fvlib.cache import cache_dir, write_json
from fvlib.systems import METHOD_ORDER, System  # noqa: F401 (METHOD_ORDER re-exported)
from fvlib.splits import Split

if TYPE_CHECKING:
    from fvlib.experiment import Experiment


def mia_workers(ex: "Experiment") -> int:
    """Processes for the SVC fits: the profile's choice, else 0 on a CPU and up to 8 beside a GPU."""
    if ex.profile.mia_workers is not None:
        return ex.profile.mia_workers
    return 0 if ex.data.device.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 2))


def _write_manifests(ex: "Experiment", split_list: Sequence[Split]) -> None:
    """Every split's indices, so anyone outside fvlib can rebuild exactly these sets."""
    for s in split_list:
        path = cache_dir() / "manifests" / f"{ex.data.name}-{s.name}-{s.hash}.json"
        if not path.exists():
            write_json(path, s.manifest())


def run_study(ex: "Experiment", scenario: str, methods: Sequence[str] = METHOD_ORDER,
              trials: Sequence[int] | None = None, progress: bool = True,
              configs: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every (method, trial) record of one scenario (cached/resumed), as a tidy DataFrame.

    configs: a method's config where the profile has none or should be overridden (e.g.
    {"fv_plus": selection.config}); it is part of the records' key."""
    configs = configs or {}
    split_list = ex.splits(scenario, trials)
    _write_manifests(ex, split_list)
    cfg, bs = metrics.MIAConfig(), ex.profile.eval_batch_size
    pool = mia.pool(mia_workers(ex))
    try:
        def compute(system: System, split: Split, _item):
            return metrics.evaluate_async(system.module, ex.data, split, cfg, batch_size=bs, pool=pool)
        rows = []
        for method in methods:
            rows += records.grid(ex, "study", method, split_list, [None], compute, lambda _: (cfg,),
                                 cfg=configs.get(method), progress=progress)
    finally:
        if pool is not None:
            pool.shutdown()
    return pd.DataFrame(rows)


def single_solve_seconds(ex: "Experiment", scenario: str) -> float:
    """Wall seconds of one forget vector solved alone (K = 1, trial 0): Table A1's per-vector time,
    which a batched solve's share per vector is not. Cached as a record like everything else."""
    split = ex.splits(scenario, [0])[0]
    cfg = ex.profile.fv_for(scenario)
    key = records.key(ex, "timing", "fv", split, cfg, "single-solve")
    rec = records.read("timing", key)
    if rec is None:
        fv = solve.solve(ex.original, ex.data, split, cfg, progress=False)
        rec = records.write(ex, "timing", key, {"method": "fv", "trial": split.trial, "scenario": scenario,
                                                "seconds": fv.meta["solve_seconds"]})
    return float(rec["seconds"])


# ----------------------------------------------------------------------------- tables

def summary(recs: pd.DataFrame, metric_cols=metrics.METRICS) -> pd.DataFrame:
    """Mean and std (in %) per method and metric, Avg.Gap vs Retrain (recomputed), minutes."""
    g = recs.groupby("method", sort=False)
    mean, std = g[list(metric_cols)].mean() * 100, g[list(metric_cols)].std(ddof=0) * 100
    out = pd.concat({"mean": mean, "std": std}, axis=1)
    if "retrain" in mean.index:
        ref = mean.loc["retrain"].to_dict()
        out[("gap", "Avg.Gap")] = [metrics.avg_gap(mean.loc[m].to_dict(), ref) for m in mean.index]
    out[("time", "minutes")] = g["seconds"].mean() / 60
    out[("time", "trials")] = g.size()
    return out


def formatted(summ: pd.DataFrame) -> pd.DataFrame:
    """Table 1 layout: 'mean±std (gap)' cells, best / second-best Avg.Gap marked ** / *."""
    cols = [c for c in metrics.METRICS if ("mean", c) in summ.columns]
    ref = summ.loc["retrain", "mean"] if "retrain" in summ.index else None
    table = pd.DataFrame(index=[labels.method(m) for m in summ.index])
    for c in cols:
        cells = []
        for m in summ.index:
            mu, sd = summ.loc[m, ("mean", c)], summ.loc[m, ("std", c)]
            gap = f" ({abs(mu - ref[c]):.2f})" if ref is not None else ""
            cells.append(f"{mu:.2f}±{sd:.2f}{gap}")
        table[c] = cells
    if ("gap", "Avg.Gap") in summ.columns:
        gaps = summ[("gap", "Avg.Gap")]
        ranked = gaps.drop("retrain", errors="ignore").sort_values()
        marks = {m: "**" if i == 0 else "*" if i == 1 else "" for i, m in enumerate(ranked.index)}
        table["Avg.Gap"] = [f"{gaps[m]:.2f}{marks.get(m, '')}" for m in summ.index]
    table.index.name = "method"
    return table


def styled(summ: pd.DataFrame):
    """A notebook view of summary(): mean (%) per metric and Avg.Gap, best Avg.Gap highlighted."""
    view = summ["mean"].copy()
    if ("gap", "Avg.Gap") in summ.columns:
        view["Avg.Gap"] = summ[("gap", "Avg.Gap")]
    view.index = [labels.method(m) for m in view.index]
    others = [i for i in view.index if i != labels.method("retrain")]
    sty = view.style.format("{:.2f}")
    if "Avg.Gap" in view and others:
        sty = sty.highlight_min(subset=pd.IndexSlice[others, ["Avg.Gap"]], color="#c6efce")
    return sty


def runtime_table(summaries: dict[str, pd.DataFrame], single: dict[str, float] | None = None
                  ) -> pd.DataFrame:
    """Table A1 analogue: minutes per method and trial for each scenario. For FV the batched
    solve's share per vector is labelled as such; `single` adds the time of one solve alone (K=1)."""
    cols = {sc: s[("time", "minutes")] for sc, s in summaries.items()}
    table = pd.DataFrame(cols)
    k = {sc: int(s.loc["fv", ("time", "trials")]) for sc, s in summaries.items() if "fv" in s.index}
    names = {m: labels.method(m) for m in table.index}
    if k:
        names["fv"] = f"{labels.method('fv')}, batched share (K={max(k.values())})"
    table = table.rename(index=names)
    if single:
        table.loc[f"{labels.method('fv')}, one solve (K=1)"] = {sc: v / 60 for sc, v in single.items()}
    table.index.name = "method"
    return table.round(3)
