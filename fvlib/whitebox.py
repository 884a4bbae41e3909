"""White-box "restore" attack on unlearning (the limitation the paper concedes; docs/protocol.md P9.1).

An adversary who knows the deployed system adds an ℓ∞ perturbation of budget ε to each forget
image (PGD, P8.3) to *minimise* the true-label loss, i.e. to make the system recognise the
forgotten data again. For a forget vector the system is `fv.wrap(θ_o)`, so the attack's gradient
flows through x_adv + δ: the adversary sees δ. Not a paper result. Records: kind "whitebox".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from fvlib import labels, metrics, plots, records
from fvlib import shifts as shiftlib
from fvlib.runtime import generator
from fvlib.splits import Split
from fvlib.views import pgd_cap, subsample

if TYPE_CHECKING:
    from fvlib.experiment import Experiment
    from fvlib.systems import System

EPS = tuple(e / 255 for e in (0, 1, 2, 4, 8))
ATTACKED = ("fv", "retrain", "salun", "scrub")  # the forget vector and the model-based methods closest to Retrain


def step_size(eps: float) -> float:
    """PGD step for budget ε: ε/4, at least half a grey level."""
    return max(eps / 4, 0.5 / 255)


def whitebox_curve(ex: "Experiment", methods: Sequence[str] = ATTACKED, eps: Sequence[float] = EPS,
                   trials: Sequence[int] | None = None, steps: int = 7, seed: int = 0,
                   max_eval: int = 0, progress: bool = True) -> pd.DataFrame:
    """Forget-set accuracy (method, trial, eps, forget_acc in [0, 1]) under the restore attack.

    Class-wise trials; `steps` PGD steps of step_size(ε) from a random start, on float images.
    ε = 0 is the plain forget accuracy (1 − UA). max_eval: forget images attacked per system and
    trial (a seeded random subset; 0: the profile's, −1: all).
    """
    cap, bs = pgd_cap(ex, max_eval), ex.profile.eval_batch_size

    def compute(ex: "Experiment", system: "System", split: Split, e: float) -> dict:
        idx = subsample(split.forget, cap, generator(seed, "whitebox-max-eval"))
        x, y = ex.data.train_x[idx], ex.data.train_y[idx]
        g = generator(seed, f"whitebox-{e:.6f}", ex.data.device)
        xa = shiftlib.pgd(system.module, x, y, e, steps if e > 0 else 0, step_size(e), restore=True,
                          g=g, random_start=e > 0)
        acc = metrics.accuracy(system.module, xa, y, batch_size=bs, transform=lambda b: b)  # float already
        return {"eps": float(e), "forget_acc": acc, "max_eval": cap}
    split_list = ex.splits("classwise", trials)
    grids = [records.Grid("whitebox", m, split_list, [float(e) for e in eps], compute,
                          lambda e: (e, steps, seed, cap), fields=("forget_acc",)) for m in methods]
    return pd.DataFrame([r for rows in records.run(ex, grids, progress) for r in rows])


def whitebox_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean forget-set accuracy (%): rows = methods, columns = ε in units of 1/255."""
    table = metrics.percent(curve.assign(eps_255=(curve["eps"] * 255).round(3)).pivot_table(
        index="method", columns="eps_255", values="forget_acc", aggfunc="mean", sort=False))
    table.columns = [int(c) if float(c).is_integer() else c for c in table.columns]
    table.columns.name = "ε (×1/255)"
    return table.rename(index=labels.method)


def plot_whitebox(curve: pd.DataFrame) -> tuple[plt.Figure, dict]:
    """Forget-set accuracy (%) vs ε·255 per method, ±std over trials."""
    fig, ax = plt.subplots(figsize=(4, 2.8))
    numbers = {}
    for m in curve["method"].unique():
        g = curve[curve["method"] == m].groupby("eps")["forget_acc"]
        stats = metrics.percent(pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0)}).sort_index())
        x = (stats.index.to_numpy() * 255).round(3)
        numbers[labels.method(m)] = {"eps_255": x.tolist(), **plots.band(ax, x, stats, labels.method(m))}
    ax.set(xlabel="adversary budget ε (×1/255, ℓ∞ PGD)", ylabel="forget-set accuracy (%)",
           ylim=(-3, 103), title="White-box restore attack on D_f")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers
