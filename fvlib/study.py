"""Table 1 / A1: every method on the same splits -> cached, resumable records -> tables.

Trial i uses the same split for every method (class-wise: class i; random: seed i). Records live
in the one record store (fvlib.records, kind "study"); the forget vector ("fv") is one of the
methods, and its vectors for all missing trials are solved in one batched pass. Every method's
missing records are handed to the executor at once (on a GPU the MIA's SVC fits run in processes
while the GPU goes on with the next system). Each record carries the attack's own power (MIA_power:
the SVC's balanced accuracy on retain vs test) and any warning (a diverged method), and the tables
show both.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from fvlib import labels, metrics, records, solve
from fvlib.cache import cache_dir, ensure_writable, write_json
from fvlib.mia import MIAConfig
from fvlib.splits import Split
from fvlib.systems import METHOD_ORDER, System, check_methods

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

WEAK_ATTACK = 55.0  # MIA_power (%) below which MIA-Efficacy is marked: the SVC tells members from
#                     non-members barely better than chance, so its verdict on D_f means little


def _write_manifests(ex: "Experiment", split_list: Sequence[Split]) -> None:
    """Every split's indices, so anyone outside fvlib can rebuild exactly these sets."""
    folder = ensure_writable(cache_dir() / "manifests")
    for s in split_list:
        path = folder / f"{ex.data.name}-{s.name}-{s.hash}.json"
        if not path.exists():
            write_json(path, s.manifest())


def run_study(ex: "Experiment", scenario: str, methods: Sequence[str] = METHOD_ORDER,
              trials: Sequence[int] | None = None, progress: bool = True,
              configs: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every (method, trial) record of one scenario (cached/resumed), as a tidy DataFrame.

    configs: a method's config where the profile has none or should be overridden (e.g.
    {"fv_plus": choice.config}); it is part of the records' key."""
    methods, configs = check_methods(methods), configs or {}
    split_list = ex.splits(scenario, trials)
    _write_manifests(ex, split_list)
    mcfg, bs = MIAConfig(), ex.profile.eval_batch_size

    def compute(ex: "Experiment", system: System, split: Split, _item):
        return metrics.measure(system.module, ex.data, split, mcfg, batch_size=bs)
    grids = [records.Grid("study", m, split_list, [None], compute, lambda _: (mcfg,), configs.get(m),
                          fields=metrics.METRICS) for m in methods]
    return pd.DataFrame([r for rows in records.run(ex, grids, progress) for r in rows])


@dataclasses.dataclass
class Table:
    """One Table 1 block: its records and their summary; shows itself as the styled summary."""
    scenario: str
    records: pd.DataFrame
    summary: pd.DataFrame

    def formatted(self) -> pd.DataFrame:
        """The paper's layout (see `formatted`)."""
        return formatted(self.summary)

    def _repr_html_(self) -> str:
        return styled(self.summary).to_html()


def table(ex: "Experiment", scenario: str, methods: Sequence[str] = METHOD_ORDER, name: str | None = None,
          configs: dict[str, Any] | None = None, trials: Sequence[int] | None = None,
          settings: Any = None, progress: bool = True) -> Table:
    """run_study, its summary, and the formatted table saved as figures/<profile>/<name> (default
    table1_<scenario>) with the records as its numbers."""
    recs = run_study(ex, scenario, methods, trials, progress, configs)
    out = Table(scenario, recs, summary(recs))
    ex.save_table(out.formatted(), name or f"table1_{scenario}", numbers=recs, settings=settings or configs)
    return out


def single_solve_seconds(ex: "Experiment", scenario: str) -> float:
    """Wall seconds of one forget vector solved alone (K = 1, trial 0): Table A1's per-vector time,
    which a batched solve's share per vector is not. Cached as a record like everything else."""
    split = ex.splits(scenario, [0])[0]
    cfg = ex.profile.fv_for(scenario)
    key = records.key(ex, "timing", "fv", split, cfg, "single-solve")
    rec = records.read("timing", key)
    if rec is None:
        fv = solve.solve(ex.original, ex.data, split, cfg, progress=False, fingerprint=ex.identity[1])
        rec = records.write(ex, "timing", key, {"method": "fv", "trial": split.trial, "scenario": scenario,
                                                "seconds": fv.meta["solve_seconds"]})
    return float(rec["seconds"])


# ----------------------------------------------------------------------------- tables

def summary(recs: pd.DataFrame, metric_cols=metrics.METRICS) -> pd.DataFrame:
    """Mean and std (in %) per method and metric, Avg.Gap vs Retrain (recomputed), minutes, trials,
    the MIA's own power (in %) and the number of records with a warning."""
    g = recs.groupby("method", sort=False)
    mean, std = metrics.percent(g[list(metric_cols)].mean()), metrics.percent(g[list(metric_cols)].std(ddof=0))
    out = pd.concat({"mean": mean, "std": std}, axis=1)
    if "retrain" in mean.index:
        ref = mean.loc["retrain"].to_dict()
        out[("gap", "Avg.Gap")] = [metrics.avg_gap(mean.loc[m].to_dict(), ref) for m in mean.index]
    out[("time", "minutes")] = g["seconds"].mean() / 60
    out[("time", "trials")] = g.size()
    if "MIA_power" in recs:
        out[("attack", "MIA_power")] = metrics.percent(g["MIA_power"].mean())
    warned = recs["warnings"].map(lambda w: isinstance(w, list) and bool(w)) if "warnings" in recs else None
    out[("flags", "warnings")] = (warned.groupby(recs["method"], sort=False).sum()
                                  if warned is not None else 0)
    return out


def formatted(summ: pd.DataFrame) -> pd.DataFrame:
    """Table 1 layout: 'mean±std (gap)' cells, best / second-best Avg.Gap marked ** / *; MIA cells
    whose attack is weak (power < WEAK_ATTACK %) marked †, methods with warnings ⚠ (see records)."""
    cols = [c for c in metrics.METRICS if ("mean", c) in summ.columns]
    ref = summ.loc["retrain", "mean"] if "retrain" in summ.index else None
    power = summ[("attack", "MIA_power")] if ("attack", "MIA_power") in summ.columns else None
    warned = summ[("flags", "warnings")] if ("flags", "warnings") in summ.columns else None
    table = pd.DataFrame(index=[labels.method(m) + (" ⚠" if warned is not None and warned[m] else "")
                                for m in summ.index])
    for c in cols:
        cells = []
        for m in summ.index:
            mu, sd = summ.loc[m, ("mean", c)], summ.loc[m, ("std", c)]
            gap = f" ({abs(mu - ref[c]):.2f})" if ref is not None else ""
            weak = "†" if c == "MIA" and power is not None and power[m] < WEAK_ATTACK else ""
            cells.append(f"{mu:.2f}±{sd:.2f}{gap}{weak}")
        table[c] = cells
    if power is not None:
        table["MIA power"] = [f"{v:.1f}" for v in power]
    if ("gap", "Avg.Gap") in summ.columns:
        gaps = summ[("gap", "Avg.Gap")]
        ranked = gaps.drop("retrain", errors="ignore").sort_values()
        marks = {m: "**" if i == 0 else "*" if i == 1 else "" for i, m in enumerate(ranked.index)}
        table["Avg.Gap"] = [f"{gaps[m]:.2f}{marks.get(m, '')}" for m in summ.index]
    table.index.name = "method"
    return table


def styled(summ: pd.DataFrame):
    """A notebook view of summary(): mean (%) per metric, the MIA's power and Avg.Gap, the best
    Avg.Gap highlighted."""
    view = summ["mean"].copy()
    if ("attack", "MIA_power") in summ.columns:
        view["MIA power"] = summ[("attack", "MIA_power")]
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
