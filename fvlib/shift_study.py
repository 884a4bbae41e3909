"""Shift robustness (paper Sec. 4, Fig. 2 / A1): every system evaluated on shifted data.

Shifted evaluation (docs/protocol.md P8): the forget, retain and test sets AND the MIA's members
(retain), non-members (test) and targets (forget) all use the shifted images; a forget vector's δ
is added on top of the shifted image (it is inside the system). Corruptions (P8.1 GN, P8.2 ET) are
rendered once per (data, seed, params) and cached; PGD (P8.3) is white-box against the system
evaluated (so it sees δ) unless cfg.attack_original, and is quantised to uint8 like the paper's
saved image folders (fvlib.views builds every shifted set). Records: kind "shift" in the one record
store (fvlib.records).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from fvlib import labels, metrics, plots, records
from fvlib.mia import MIAConfig
from fvlib.shifts import ShiftConfig
from fvlib.splits import Split
from fvlib.views import SHIFT_ORDER, pgd_cap, shift_params, shifted_data

if TYPE_CHECKING:
    from fvlib.experiment import Experiment
    from fvlib.systems import System

FIG2_METHODS = ("original", "retrain", "ft", "rl", "ga")  # the systems of Fig. 2 and Fig. A1


# ----------------------------------------------------------------------------- records

def shift_study(ex: "Experiment", methods: Sequence[str] = FIG2_METHODS, shifts: Sequence[str] = SHIFT_ORDER,
                trials: Sequence[int] | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                max_eval: int = 0, progress: bool = True) -> pd.DataFrame:
    """Class-wise records (method, trial, shift, UA, RA, TA, MIA, MIA_loss), cached per record.

    'original' is θ_o itself; 'fv' is θ_o behind δ (added on top of the shifted image).
    max_eval: PGD images per set and system (0: the profile's, −1: all).
    """
    split_list = ex.splits("classwise", trials)
    mcfg, cap, bs = MIAConfig(), pgd_cap(ex, max_eval), ex.profile.eval_batch_size

    def key_extra(s: str) -> tuple:
        return s, shift_params(s, cfg), seed, cap if s == "pgd" else None, mcfg

    def compute(ex: "Experiment", system: "System", split: Split, s: str):
        view, compact = shifted_data(system.module, ex.data, split, s, seed, cfg, ex.original,
                                     cap if s == "pgd" else None)
        acc, job = metrics.measure(system.module, view, compact, mcfg, batch_size=bs)
        return {"shift": s, "max_eval": cap if s == "pgd" else None, **acc}, job
    grids = [records.Grid("shift", m, split_list, list(shifts), compute, key_extra, fields=metrics.METRICS)
             for m in methods]
    return pd.DataFrame([r for rows in records.run(ex, grids, progress) for r in rows])


# ----------------------------------------------------------------------------- summaries and plots

def shift_summary(recs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std (%) of one metric as text: rows = methods, columns = shift conditions."""
    g = recs.groupby(["method", "shift"], sort=False)[metric]
    cell = lambda v: f"{metrics.percent(v.mean()):.2f}±{metrics.percent(v.std(ddof=0)):.2f}"  # noqa: E731
    table = g.apply(cell).unstack("shift")
    table = table[[s for s in SHIFT_ORDER if s in table.columns]].rename(columns=labels.SHIFTS)
    return table.rename(index=labels.method)


def shift_overview(recs: pd.DataFrame) -> pd.DataFrame:
    """Per method, mean (%) of each metric on benign data and averaged over the shifted conditions."""
    benign = recs["shift"] == "benign"
    cols = ["UA", "RA", "TA", "MIA"]
    out = pd.concat({"benign": recs[benign].groupby("method", sort=False)[cols].mean(),
                     "shifted": recs[~benign].groupby("method", sort=False)[cols].mean()}, axis=1)
    return metrics.percent(out.swaplevel(axis=1)[cols]).rename(index=labels.method)


def plot_shift_curves(recs: pd.DataFrame, methods: Sequence[str],
                      metric_order: Sequence[str] = ("TA", "RA", "UA", "MIA")) -> tuple[plt.Figure, dict]:
    """Fig. 2 / A1: one panel per metric, x = shift condition, a ±std band per method."""
    conds = [s for s in SHIFT_ORDER if s in set(recs["shift"])]
    fig, axes = plt.subplots(1, len(metric_order), figsize=(2.8 * len(metric_order), 2.6), squeeze=False)
    numbers = {"conditions": [labels.SHIFTS[c] for c in conds]}
    for j, (ax, metric) in enumerate(zip(axes[0], metric_order)):
        numbers[metric] = {}
        for m in methods:
            g = recs[recs["method"] == m].groupby("shift")[metric]
            stats = metrics.percent(pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0)}).reindex(conds))
            numbers[metric][labels.method(m)] = plots.band(ax, range(len(conds)), stats, labels.method(m))
        ax.set_xticks(range(len(conds)), numbers["conditions"], fontsize=7)
        ax.set(title=f"({'abcdefgh'[j]}) {metric}", ylabel=f"{metric} (%)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers
