"""Table 2 (docs/protocol.md P9.1): unlearning accuracy on forget data the method never saw.

Column 1 ("test_class") is class-wise forgetting: UA on the test images of the forgotten class.
Columns 2–3 ("gn1", "et1") are random forgetting: UA on D_f shifted by GN1 / ET1 (P8.1, P8.2).
Trial i is class i for column 1 and forget-set seed i for columns 2–3. For a forget vector δ is
added on top of the (shifted) image (it is inside the system). Records: kind "transfer".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from fvlib import labels, metrics, paper, records
from fvlib.shifts import ShiftConfig
from fvlib.splits import Split
from fvlib.systems import METHOD_ORDER
from fvlib.views import shift_params, shifted_view

if TYPE_CHECKING:
    from fvlib.experiment import Experiment
    from fvlib.systems import System

COLUMNS = {"test_class": "D'_f from testing class", "gn1": "D_f perturbed by GN1",
           "et1": "D_f perturbed by ET1"}
SHIFTED = ("gn1", "et1")  # the random-forgetting columns


def transfer_records(ex: "Experiment", methods: Sequence[str] = METHOD_ORDER,
                     trials: Sequence[int] | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                     progress: bool = True) -> pd.DataFrame:
    """Tidy records (method, trial, scenario, condition, UA in [0, 1]) of the three columns."""
    bs = ex.profile.eval_batch_size

    def compute(ex: "Experiment", system: "System", split: Split, c: str) -> dict:
        data = ex.data
        if c == "test_class":
            x, y = data.test_x[split.test_forget], data.test_y[split.test_forget]
        else:
            idx = split.forget.nonzero().flatten()
            x, y = shifted_view(c, data, seed, cfg, train_idx=idx)[0], data.train_y[idx]
        return {"condition": c, "UA": 1.0 - metrics.accuracy(system.module, x, y, batch_size=bs)}
    cw, rd = ex.splits("classwise", trials), ex.splits("random", trials)
    grids = [g for m in methods for g in (
        records.Grid("transfer", m, cw, ["test_class"], compute, fields=("UA",)),
        records.Grid("transfer", m, rd, list(SHIFTED), compute, lambda c: (c, shift_params(c, cfg), seed),
                     fields=("UA",)))]
    return pd.DataFrame([r for rows in records.run(ex, grids, progress) for r in rows])


def transfer_summary(recs: pd.DataFrame) -> pd.DataFrame:
    """Numeric Table 2 (%): per column <c>_mean, <c>_std, <c>_paper, <c>_diff (ours − paper);
    rows = method keys, in record order."""
    g = recs.groupby(["method", "condition"], sort=False)["UA"]
    mean, std = metrics.percent(g.mean().unstack()), metrics.percent(g.std(ddof=0).unstack())
    methods, ref = list(dict.fromkeys(recs["method"])), paper.table2()
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for c in COLUMNS:
        out[f"{c}_mean"], out[f"{c}_std"] = mean[c].reindex(methods), std[c].reindex(methods)
        out[f"{c}_paper"] = [ref[m][c][0] if m in ref else np.nan for m in methods]
        out[f"{c}_diff"] = out[f"{c}_mean"] - out[f"{c}_paper"]
    return out


def transfer_table(ex: "Experiment", methods: Sequence[str] = METHOD_ORDER,
                   trials: Sequence[int] | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                   progress: bool = True) -> pd.DataFrame:
    """Table 2 (numeric, %): transfer_records summarised next to the paper's values."""
    return transfer_summary(transfer_records(ex, methods, trials, seed, cfg, progress))


def format_transfer(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as text: per column 'ours mean±std', 'paper mean±std', 'Δ (ours − paper)'."""
    ref = paper.table2()
    keys = list(summary.index)
    out = pd.DataFrame(index=pd.Index([labels.method(k) for k in keys], name="method"))
    for c, name in COLUMNS.items():
        out[name] = [f"{m:.2f}±{s:.2f}" for m, s in zip(summary[f"{c}_mean"], summary[f"{c}_std"])]
        out[f"{name} (paper)"] = [f"{ref[k][c][0]:.2f}±{ref[k][c][1]:.2f}" if k in ref else "–"
                                  for k in keys]
        out[f"{name} Δ"] = [f"{d:+.2f}" if np.isfinite(d) else "–" for d in summary[f"{c}_diff"]]
    return out


def styled(summary: pd.DataFrame):
    """A notebook view of transfer_summary(): ours and the paper per column (UA %, higher = more
    forgetting of unseen forget data), the best of ours per column (Retrain aside) highlighted."""
    view = pd.DataFrame(index=[labels.method(k) for k in summary.index])
    for c, name in COLUMNS.items():
        view[(name, "ours")] = summary[f"{c}_mean"].to_numpy()
        view[(name, "paper")] = summary[f"{c}_paper"].to_numpy()
    view.columns = pd.MultiIndex.from_tuples(view.columns)
    rows = [i for i in view.index if i not in (labels.method("retrain"), labels.method("original"))]
    sty = view.style.format("{:.2f}", na_rep="–")
    if rows:
        ours = [(name, "ours") for name in COLUMNS.values()]
        sty = sty.highlight_max(subset=pd.IndexSlice[rows, ours], color="#c6efce")
    return sty
