"""Hyper-parameter sensitivity of forget vectors (paper App. B Fig. A2, App. C Fig. A3) and the
random-forgetting Beta (docs/protocol.md P4, P10 D4 / D10).

A sweep is a list of conditions, each a point (labels, FVConfig): `tau_points` (Fig. A2: the
margin threshold τ of Eq. 3), `lambda_points` (Fig. A3: retain weight λ1 × norm weight λ2 of Eq. 4,
or their code-form counterparts Alpha × Lambda, P4.2) and `beta_points` (the forget weight Beta of
the code form). Each point's records come from the one record store
(`records.grid(ex, "sweep", "fv", splits, [None], compute, cfg=point)`): the point's vectors of
all missing trials are solved in one batch, every (point, trial) result is a record with the
store's provenance, and a rerun or an interrupted sweep recomputes nothing that finished. A
config reached from two sweeps (e.g. code-form (λ1, λ2) = (1, 1) is the τ = 1 point) is one record.

Grids, trials and epochs default to the study's sizes (`SweepSizes`, with the profile's overrides
in `Profile.studies["sweeps"]`). "avg" is the paper's "average performance across TA, RA, UA and
MIA-Efficacy" (Figs. A2-A3): the plain mean of the four metrics, not Table 1's Avg.Gap to Retrain.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from fvlib import labels, metrics, records
from fvlib.mia import MIAConfig
from fvlib.solve import FVConfig

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

TAUS = tuple(round(0.2 * i, 1) for i in range(12))     # Fig. A2: 0.0, 0.2, …, 2.2
LAMBDA1S = (1.0, 2.0, 3.0, 4.0, 5.0)                   # Fig. A3 rows (retain weight)
LAMBDA2S = (0.0, 1.0, 2.0, 3.0, 4.0)                   # Fig. A3 columns (norm weight)
CHOSEN_TAU = 1.0                                       # the paper's τ (Sec. 5, App. B)
# The paper's (λ1, λ2) for CIFAR-10 (Sec. 6, App. C): class-wise (3, 1), random (1, 1).
CHOSEN_LAMBDA = {"classwise": (3.0, 1.0), "random": (1.0, 1.0)}
BETAS = (1.0, 3.0, 9.0)      # random-forgetting candidates: λ1 = 1 read as Beta 1, Beta 3, ratio reading 9
BETA_UA_SLACK = 0.01         # choose_beta: 1 point of UA below Retrain's counts as reaching it
METRIC_COLS = ("UA", "RA", "TA", "MIA")
OBJECTIVE_FORMS = {
    "paper": "paper Eq. 4: ℓ_f + λ1·CE(D_r) + λ2·‖δ‖₂² (per-side means)",
    "code": "code form P4.1: Beta·ℓ_f + λ1·CE(D_r) + λ2·‖δ‖₂/B (λ1 = Alpha, λ2 = Lambda)",
}
Point = tuple[dict, FVConfig]  # (labels shown as columns, e.g. {"tau": 0.4}; the config solved)


@dataclasses.dataclass(frozen=True)
class SweepSizes:
    """How big the sweeps are (Profile.studies["sweeps"]); the paper's grids by default."""
    taus: tuple[float, ...] = TAUS         # Fig. A2 grid
    lambda1s: tuple[float, ...] = LAMBDA1S  # Fig. A3 grid rows
    lambda2s: tuple[float, ...] = LAMBDA2S  # Fig. A3 grid columns
    trials: int | None = None              # trials per sweep point (None: the profile's trials)
    epochs: int | None = None              # forget-vector epochs per point (None: the config's own)


def sizes(ex: "Experiment") -> SweepSizes:
    """The sweep sizes of ex's profile."""
    return ex.profile.sizes("sweeps", SweepSizes)


# ----------------------------------------------------------------------------- conditions

def _with_epochs(cfg: FVConfig, epochs: int | None) -> FVConfig:
    return dataclasses.replace(cfg, epochs=int(epochs)) if epochs else cfg


def tau_config(base: FVConfig, tau: float, epochs: int | None = None) -> FVConfig:
    """base with margin threshold τ (and optionally other epochs)."""
    return _with_epochs(dataclasses.replace(base, tau=float(tau)), epochs)


def lambda_config(base: FVConfig, lambda1: float, lambda2: float, objective: str = "paper",
                  epochs: int | None = None) -> FVConfig:
    """base with the retain weight λ1 and norm weight λ2 of the given objective form (P4.2).

    "paper": Eq. 4 literally (FVConfig.lambda1 / lambda2, squared norm).
    "code":  the authors' loss (P4.1) with λ1 -> Alpha (retain CE) and λ2 -> Lambda (‖δ‖/B);
             the forget weight Beta stays the base's.
    """
    if objective == "paper":
        cfg = dataclasses.replace(base, objective="paper", lambda1=float(lambda1), lambda2=float(lambda2))
    elif objective == "code":
        cfg = dataclasses.replace(base, objective="code", alpha=float(lambda1), lambda_norm=float(lambda2))
    else:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVE_FORMS)}")
    return _with_epochs(cfg, epochs)


def beta_config(base: FVConfig, beta: float, epochs: int | None = None) -> FVConfig:
    """base with the code form's forget weight Beta for every split (any per-class table dropped)."""
    if base.objective == "paper":
        raise ValueError("the paper objective (Eq. 4) has no Beta; sweep lambda1 with lambda_config")
    return _with_epochs(dataclasses.replace(base, beta=float(beta), beta_per_class=None), epochs)


def _epochs(ex: "Experiment", epochs: int | None) -> int | None:
    """Sweep epochs: given (> 0), else the sweep sizes' (None keeps the config's own)."""
    return int(epochs) if epochs else sizes(ex).epochs


def tau_points(ex: "Experiment", scenario: str, taus: Sequence[float] | None = None,
               epochs: int | None = None) -> list[Point]:
    """Fig. A2 conditions: the scenario's profile config with τ replaced (default: the sizes' grid)."""
    base, e = ex.profile.fv_for(scenario), _epochs(ex, epochs)
    return [({"tau": float(t)}, tau_config(base, t, e)) for t in (taus or sizes(ex).taus)]


def lambda_points(ex: "Experiment", scenario: str, lambda1s: Sequence[float] | None = None,
                  lambda2s: Sequence[float] | None = None, objective: str = "paper",
                  epochs: int | None = None) -> list[Point]:
    """Fig. A3 conditions: λ1 × λ2 (default: the sizes' lambda1s × lambda2s)."""
    base, e, sz = ex.profile.fv_for(scenario), _epochs(ex, epochs), sizes(ex)
    return [({"lambda1": float(a), "lambda2": float(b)}, lambda_config(base, a, b, objective, e))
            for a in (lambda1s or sz.lambda1s) for b in (lambda2s or sz.lambda2s)]


def beta_points(ex: "Experiment", scenario: str, betas: Sequence[float] = BETAS,
                epochs: int | None = None) -> list[Point]:
    """Beta conditions: the scenario's profile config with Beta replaced."""
    base, e = ex.profile.fv_for(scenario), _epochs(ex, epochs)
    return [({"beta": float(b)}, beta_config(base, b, e)) for b in betas]


# ----------------------------------------------------------------------------- records

def trial_ids(ex: "Experiment", trials: int | Sequence[int] | None = None) -> list[int]:
    """Trials of a sweep: a list as given, n -> 0..n-1, None / 0 -> the sizes' trials (or the profile's)."""
    if trials is None or isinstance(trials, int):
        return ex.trials(trials or sizes(ex).trials)
    return [int(t) for t in trials]


def sweep(ex: "Experiment", scenario: str, points: Sequence[Point],
          trials: int | Sequence[int] | None = None, name: str = "custom",
          progress: bool = False, kind: str = "sweep") -> pd.DataFrame:
    """One row per (point, trial): the point's labels, UA, RA, TA, MIA, avg, MIA_loss, ‖δ‖₂
    (delta_l2), seconds (solve time per vector), objective, epochs and the record key.

    Only missing records are computed (kind "sweep"), all points handed to the executor at once;
    MIA fits overlap the next solve on a GPU.
    """
    split_list = ex.splits(scenario, trial_ids(ex, trials))
    mcfg, bs = MIAConfig(), ex.profile.eval_batch_size

    def compute_for(cfg: FVConfig):
        def compute(ex, system, split, _item):
            acc, job = metrics.measure(system.module, ex.data, split, mcfg, batch_size=bs)
            return {**acc, "delta_l2": system.vector.norm, "objective": cfg.objective,
                    "epochs": cfg.epochs, "config": cfg}, job
        return compute
    grids = [records.Grid(kind, "fv", split_list, [None], compute_for(cfg), lambda _: (mcfg,), cfg,
                          fields=metrics.METRICS) for _labels, cfg in points]
    out = records.run(ex, grids, progress)
    rows = [{**r, **point_labels, "sweep": name} for (point_labels, _), recs in zip(points, out) for r in recs]
    df = pd.DataFrame(rows)
    df["avg"] = df[list(METRIC_COLS)].mean(axis=1)
    keys = list(dict.fromkeys(k for lab, _ in points for k in lab))
    cols = ["scenario", *keys, "trial", *METRIC_COLS, "avg", "MIA_loss", "delta_l2", "seconds",
            "objective", "epochs", "key"]
    return df[cols].reset_index(drop=True)


def tau_sweep(ex: "Experiment", scenario: str, taus: Sequence[float] | None = None,
              trials: int | Sequence[int] | None = None, epochs: int | None = None,
              progress: bool = False) -> pd.DataFrame:
    """Fig. A2: one row per (τ, trial); the scenario's profile config with τ replaced."""
    return sweep(ex, scenario, tau_points(ex, scenario, taus, epochs), trials, "tau", progress)


def lambda_grid(ex: "Experiment", scenario: str, lambda1s: Sequence[float] | None = None,
                lambda2s: Sequence[float] | None = None, objective: str = "paper",
                trials: int | Sequence[int] | None = None, epochs: int | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Fig. A3: one row per (λ1, λ2, trial); objective "paper" (Eq. 4) or "code" (see lambda_config)."""
    points = lambda_points(ex, scenario, lambda1s, lambda2s, objective, epochs)
    return sweep(ex, scenario, points, trials, "lambda", progress)


def beta_sweep(ex: "Experiment", scenario: str, betas: Sequence[float] = BETAS,
               trials: int | Sequence[int] | None = None, epochs: int | None = None,
               progress: bool = False) -> pd.DataFrame:
    """One row per (Beta, trial): the scenario's profile config with Beta replaced (shape of the τ
    sweep). With the profile's epochs, the profile's own Beta is the headline vector (cached)."""
    return sweep(ex, scenario, beta_points(ex, scenario, betas, epochs), trials, "beta", progress)


def choose_beta(df: pd.DataFrame, retrain_ua: float) -> float:
    """The random-forgetting Beta by a rule stated before the CIFAR-10 runs (P10 D10):

    **the smallest Beta whose mean UA (over trials) reaches Retrain's mean UA minus 1 point
    (mean UA >= retrain_ua − 0.01); if none does, the Beta with the highest mean UA** (the smaller
    Beta on a tie). A larger Beta weighs the forget term more, forgetting more at the cost of RA
    and TA, so the smallest Beta that forgets as much as Retrain keeps the most utility.

    df: `beta_sweep` rows of one scenario (columns beta, UA in [0, 1]); retrain_ua: Retrain's
    mean UA on the same trials, a fraction in [0, 1] like the records (not %).
    """
    if df.empty or "beta" not in df or df["scenario"].nunique() != 1:
        raise ValueError("choose_beta needs beta_sweep rows of exactly one scenario")
    if not 0.0 <= retrain_ua <= 1.0:
        raise ValueError(f"retrain_ua is a fraction in [0, 1], got {retrain_ua} (a percentage?)")
    ua = df.groupby("beta")["UA"].mean().sort_index()
    reached = ua[ua >= retrain_ua - BETA_UA_SLACK - 1e-9]
    return float(reached.index[0] if len(reached) else ua.idxmax())


def summarize(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per scenario and setting: trials, mean and std (ddof 0) over trials in % of UA, RA, TA,
    MIA, avg (columns "<metric>_mean", "<metric>_std") and the mean ‖δ‖₂. Flat, JSON-friendly."""
    g = df.groupby(["scenario", *by], sort=False)
    out = g.size().rename("trials").to_frame()
    for m in (*METRIC_COLS, "avg"):
        out[f"{m}_mean"] = metrics.percent(g[m].mean())
        out[f"{m}_std"] = metrics.percent(g[m].std(ddof=0))
    out["delta_l2"] = g["delta_l2"].mean()
    return out.reset_index()


# ----------------------------------------------------------------------------- plots

_TAU_PANELS = (("TA", "tab:blue"), ("RA", "tab:orange"), ("UA", "tab:red"), ("MIA", "tab:green"),
               ("avg", "tab:purple"))
_PANEL_NAMES = {"TA": "TA", "RA": "RA", "UA": "UA", "MIA": "MIA-Efficacy", "avg": "Avg."}


def plot_tau(df: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Fig. A2: rows = scenarios, 5 panels (TA, RA, UA, MIA, avg) vs τ, mean ± std (shaded), in %."""
    scenarios = list(dict.fromkeys(df["scenario"]))
    fig, axes = plt.subplots(len(scenarios), len(_TAU_PANELS), squeeze=False,
                             figsize=(2.3 * len(_TAU_PANELS), 2.2 * len(scenarios) + 0.4))
    for r, sc in enumerate(scenarios):
        g = df[df["scenario"] == sc].groupby("tau")
        for c, (metric, color) in enumerate(_TAU_PANELS):
            ax = axes[r, c]
            mu, sd = metrics.percent(g[metric].mean()), metrics.percent(g[metric].std(ddof=0).fillna(0))
            ax.plot(mu.index, mu.values, "o-", color=color, ms=3, lw=1.5)
            ax.fill_between(mu.index, (mu - sd).values, (mu + sd).values, color=color, alpha=0.2, lw=0)
            ax.axvline(CHOSEN_TAU, color="0.6", ls=":", lw=1)
            ax.set_title(f"({'abcde'[c]}) {_PANEL_NAMES[metric]}" if r == 0 else _PANEL_NAMES[metric])
            ax.set_xlabel("τ")
            if c == 0:
                n = int(g.size().max())
                ax.set_ylabel(f"{labels.SCENARIOS.get(sc, sc)}\n(%; {n} trial{'s' * (n > 1)})")
    fig.suptitle(title or "Sensitivity to the margin threshold τ (mean ± std over trials)")
    fig.tight_layout()
    return fig


def lambda_table(df: pd.DataFrame, scenario: str, metric: str = "avg") -> pd.DataFrame:
    """Mean over trials (in %) of a metric as a λ1 (rows) x λ2 (columns) table."""
    sub = df[df["scenario"] == scenario]
    return metrics.percent(sub.pivot_table(index="lambda1", columns="lambda2", values=metric, aggfunc="mean"))


def plot_lambda(df: pd.DataFrame, metric: str = "avg", chosen: dict | None = None,
                title: str | None = None) -> plt.Figure:
    """Fig. A3: one heat map per scenario of the mean metric (%), λ1 rows x λ2 columns.

    Integer % in each cell, 0-100 % light-to-dark red, a green star at the paper's chosen
    (λ1, λ2) (class-wise (3, 1), random (1, 1)) when it lies on the grid. The objective form
    (paper Eq. 4 or the code form) is named in the title.
    """
    import seaborn as sns
    chosen = CHOSEN_LAMBDA if chosen is None else chosen
    scenarios = list(dict.fromkeys(df["scenario"]))
    tables = [lambda_table(df, sc, metric) for sc in scenarios]
    fig, axes = plt.subplots(1, len(scenarios), squeeze=False,
                             figsize=(0.7 * max(t.shape[1] for t in tables) * len(scenarios) + 1.6,
                                      0.55 * max(t.shape[0] for t in tables) + 1.6))
    for ax, sc, tab in zip(axes[0], scenarios, tables):
        sns.heatmap(tab, ax=ax, cmap="Reds", vmin=0, vmax=100, annot=tab.round().astype(int), fmt="d",
                    cbar=ax is axes[0, -1], cbar_kws={"label": f"{_PANEL_NAMES.get(metric, metric)} (%)"},
                    linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8})
        ax.set_xticklabels([f"{v:g}" for v in tab.columns])
        ax.set_yticklabels([f"{v:g}" for v in tab.index], rotation=0)
        ax.set(xlabel="λ2 (norm weight)", ylabel="λ1 (retain weight)",
               title=labels.SCENARIOS.get(sc, sc))
        star = chosen.get(sc)
        if star is not None and star[0] in tab.index and star[1] in tab.columns:
            # top-right corner of the cell, so the cell's number stays readable
            ax.plot(list(tab.columns).index(star[1]) + 0.8, list(tab.index).index(star[0]) + 0.22,
                    marker="*", color="tab:green", ms=11, mec="white", mew=0.6, ls="none")
    form = "; ".join(OBJECTIVE_FORMS.get(o, o) for o in sorted(set(df["objective"])))
    fig.suptitle(title or f"{_PANEL_NAMES.get(metric, metric)} of UA, RA, TA, MIA vs (λ1, λ2); ★ = paper's "
                 f"choice\nobjective: {form}", fontsize=9)
    fig.tight_layout()
    return fig
