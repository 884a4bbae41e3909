"""Hyper-parameter sensitivity of forget vectors and the Grad-CAM saliency-shift numbers.

* `tau_sweep`   — Appendix B, Fig. A2: the margin threshold τ of Eq. 3 (paper: 0.0 … 2.2, step 0.2).
* `lambda_grid` — Appendix C, Fig. A3: λ1 (retain CE) × λ2 (norm) of Eq. 4 (paper: 1…5 × 0…4).
* `pick_images`, `saliency_shift_table` — Figs. 4-5 / A4-A5: which images to show and how far each
  method's Grad-CAM map moves from the original model's (1 − cosine), on forget and retain images.

A sweep point is one forget-vector config; all trials of a point are solved in one batched
`solve.solve_many` call. Every (config, trial) result is a JSON record in
cache_dir()/sweeps/<config_hash>.json, written atomically, so an interrupted sweep resumes where it
stopped and a finished one is re-read without solving anything.

"avg" is the paper's "average performance across TA, RA, UA and MIA-Efficacy" (Figs. A2-A3): the
plain mean of the four metrics (not the Avg.Gap to Retrain of Table 1).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fvlib import cam, metrics, models, solve, splits
from fvlib.cache import config_hash, write_json
from fvlib.config import Profile
from fvlib.data import ImageData
from fvlib.paths import cache_dir
from fvlib.provenance import to_jsonable
from fvlib.runtime import device_name, generator, timer
from fvlib.solve import FVConfig

TAUS = tuple(round(0.2 * i, 1) for i in range(12))     # Fig. A2: 0.0, 0.2, …, 2.2
LAMBDA1S = (1.0, 2.0, 3.0, 4.0, 5.0)                   # Fig. A3 rows
LAMBDA2S = (0.0, 1.0, 2.0, 3.0, 4.0)                   # Fig. A3 columns
CHOSEN_TAU = 1.0                                       # the paper's τ (Sec. 5, App. B)
# The paper's (λ1, λ2) for CIFAR-10 (Sec. 6, App. C): class-wise (3, 1), random (1, 1).
CHOSEN_LAMBDA = {"classwise": (3.0, 1.0), "random": (1.0, 1.0)}
METRIC_COLS = ("UA", "RA", "TA", "MIA")
SCENARIO_LABELS = {"classwise": "class-wise forgetting", "random": "random forgetting"}
OBJECTIVES = {
    "paper": "paper Eq. 4: ℓ_f + λ1·CE(D_r) + λ2·‖δ‖₂² (per-side means)",
    "code": "code form §4.1: Beta·ℓ_f + λ1·CE(D_r) + λ2·‖δ‖₂/B (λ1 = Alpha, λ2 = Lambda)",
}


# ----------------------------------------------------------------------------- configs

def tau_config(base: FVConfig, tau: float, epochs: int | None = None) -> FVConfig:
    """base with margin threshold τ (and optionally fewer/more epochs)."""
    cfg = dataclasses.replace(base, tau=float(tau))
    return dataclasses.replace(cfg, epochs=int(epochs)) if epochs else cfg


def lambda_config(base: FVConfig, lambda1: float, lambda2: float, objective: str = "paper",
                  epochs: int | None = None) -> FVConfig:
    """base with the retain weight λ1 and norm weight λ2 of the given objective form.

    "paper": Eq. 4 literally (FVConfig.lambda1 / lambda2, squared norm).
    "code":  the authors' loss (§4.1) with λ1 -> Alpha (retain CE) and λ2 -> Lambda (‖δ‖/B);
             the forget weight Beta stays the base's.
    """
    if objective == "paper":
        cfg = dataclasses.replace(base, objective="paper", lambda1=float(lambda1), lambda2=float(lambda2))
    elif objective == "code":
        cfg = dataclasses.replace(base, objective="code", alpha=float(lambda1), lambda_norm=float(lambda2))
    else:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    return dataclasses.replace(cfg, epochs=int(epochs)) if epochs else cfg


# ----------------------------------------------------------------------------- cached sweeps

def _sweep_dir() -> Path:
    path = cache_dir() / "sweeps"
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_key(data: ImageData, model_fp: str, arch: str, cfg: FVConfig, split: splits.Split,
               mia: metrics.MIAConfig) -> str:
    """Identity of one (config, trial) result: data, θ_o, config, split and MIA protocol."""
    return config_hash("sweep", data.fingerprint, model_fp, arch, cfg, split.hash, mia)


def _read(key: str) -> dict | None:
    path = _sweep_dir() / f"{key}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes; recompute if it ever does
        return None


def average(res: dict) -> float:
    """Mean of UA, RA, TA, MIA (the 'Avg.' of Figs. A2-A3), in [0, 1]."""
    return float(np.mean([res[k] for k in METRIC_COLS]))


def run_sweep(profile: Profile, data: ImageData, original: nn.Module, scenario: str,
              points: Sequence[tuple[dict, FVConfig]], trials: Sequence[int] | None = None,
              mia: metrics.MIAConfig = metrics.MIAConfig(), progress: bool = True,
              sweep: str = "custom") -> pd.DataFrame:
    """Evaluate forget vectors for each (labels, config) point x trial; cached per (point, trial).

    labels (e.g. {"tau": 0.4}) become columns. Missing trials of a point are solved together in
    one `solve.solve_many` call. Returns one row per (point, trial) with UA, RA, TA, MIA,
    MIA_loss, avg, delta_l2 (‖δ‖₂), seconds (solve time per vector) and the record key.
    """
    trials = list(range(profile.trials)) if trials is None else [int(t) for t in trials]
    split_list = [splits.for_trial(data, scenario, t, profile.percent) for t in trials]
    fp = models.fingerprint(original)
    rows = []
    for labels, cfg in tqdm(list(points), desc=f"{sweep} sweep ({scenario})", disable=not progress):
        keys = [record_key(data, fp, profile.model, cfg, s, mia) for s in split_list]
        # a config reached from another sweep (e.g. code-form λ = (1, 1) is the τ = 1 point) is
        # the same result: reuse it under this sweep's labels
        done = {k: {**r, **labels, "sweep": sweep} for k in keys if (r := _read(k)) is not None}
        todo = [(k, s) for k, s in zip(keys, split_list) if k not in done]
        if todo:
            with timer(data.device) as t:
                vectors = solve.solve_many(original, data, [s for _, s in todo], cfg, progress=False)
            for (k, s), fv in zip(todo, vectors):
                res = metrics.evaluate(original, data, s, fv.delta, mia, batch_size=profile.eval_batch_size)
                rec = {"sweep": sweep, "scenario": scenario, "trial": s.trial, **labels,
                       "objective": cfg.objective, "epochs": cfg.epochs,
                       **{m: res[m] for m in ("UA", "RA", "TA", "MIA", "MIA_loss")},
                       "avg": average(res), "delta_l2": fv.norm,
                       "seconds": fv.meta.get("seconds", t["seconds"] / len(todo)),
                       "config": to_jsonable(cfg), "config_hash": k, "split_hash": s.hash,
                       "profile": profile.name, "dataset": data.name, "model": fp,
                       "device": device_name(data.device)}
                write_json(_sweep_dir() / f"{k}.json", rec)
                done[k] = rec
        rows += [done[k] for k in keys]
    return pd.DataFrame(rows)


def tau_sweep(profile: Profile, data: ImageData, original: nn.Module, scenario: str,
              taus: Sequence[float] = TAUS, trials: Sequence[int] | None = None,
              epochs: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Fig. A2: one row per (τ, trial); the scenario's profile config with τ replaced.

    epochs: override the profile's forget-vector epochs (e.g. fewer in smoke); None keeps them.
    """
    base = profile.fv_for(scenario)
    points = [({"tau": float(t)}, tau_config(base, t, epochs)) for t in taus]
    df = run_sweep(profile, data, original, scenario, points, trials, progress=progress, sweep="tau")
    return _tidy(df, ["tau"])


def lambda_grid(profile: Profile, data: ImageData, original: nn.Module, scenario: str,
                lambda1s: Sequence[float] = LAMBDA1S, lambda2s: Sequence[float] = LAMBDA2S,
                objective: str = "paper", trials: Sequence[int] | None = None,
                epochs: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Fig. A3: one row per (λ1, λ2, trial); objective "paper" (Eq. 4) or "code" (see lambda_config)."""
    base = profile.fv_for(scenario)
    points = [({"lambda1": float(a), "lambda2": float(b)}, lambda_config(base, a, b, objective, epochs))
              for a in lambda1s for b in lambda2s]
    df = run_sweep(profile, data, original, scenario, points, trials, progress=progress, sweep="lambda")
    return _tidy(df, ["lambda1", "lambda2"])


def _tidy(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    cols = ["scenario", *keys, "trial", *METRIC_COLS, "avg", "MIA_loss", "delta_l2", "seconds",
            "objective", "epochs", "config_hash"]
    return df[cols].reset_index(drop=True)


def summarize(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per scenario and setting: trials, mean and std (ddof 0) over trials in % of UA, RA, TA,
    MIA, avg (columns "<metric>_mean", "<metric>_std") and the mean ‖δ‖₂. Flat, JSON-friendly."""
    g = df.groupby(["scenario", *by], sort=False)
    out = g.size().rename("trials").to_frame()
    for m in (*METRIC_COLS, "avg"):
        out[f"{m}_mean"] = g[m].mean() * 100
        out[f"{m}_std"] = g[m].std(ddof=0) * 100
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
            mu, sd = g[metric].mean() * 100, g[metric].std(ddof=0).fillna(0) * 100
            ax.plot(mu.index, mu.values, "o-", color=color, ms=3, lw=1.5)
            ax.fill_between(mu.index, (mu - sd).values, (mu + sd).values, color=color, alpha=0.2, lw=0)
            ax.axvline(CHOSEN_TAU, color="0.6", ls=":", lw=1)
            ax.set_title(f"({'abcde'[c]}) {_PANEL_NAMES[metric]}" if r == 0 else _PANEL_NAMES[metric])
            ax.set_xlabel("τ")
            if c == 0:
                n = int(g.size().max())
                ax.set_ylabel(f"{SCENARIO_LABELS.get(sc, sc)}\n(%; {n} trial{'s' * (n > 1)})")
    fig.suptitle(title or "Sensitivity to the margin threshold τ (mean ± std over trials)")
    fig.tight_layout()
    return fig


def lambda_table(df: pd.DataFrame, scenario: str, metric: str = "avg") -> pd.DataFrame:
    """Mean over trials (in %) of a metric as a λ1 (rows) x λ2 (columns) table."""
    sub = df[df["scenario"] == scenario]
    return sub.pivot_table(index="lambda1", columns="lambda2", values=metric, aggfunc="mean") * 100


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
        ax.set(xlabel="λ2 (norm weight)", ylabel="λ1 (retain weight)", title=SCENARIO_LABELS.get(sc, sc))
        star = chosen.get(sc)
        if star is not None and star[0] in tab.index and star[1] in tab.columns:
            # top-right corner of the cell, so the cell's number stays readable
            ax.plot(list(tab.columns).index(star[1]) + 0.8, list(tab.index).index(star[0]) + 0.22,
                    marker="*", color="tab:green", ms=11, mec="white", mew=0.6, ls="none")
    objectives = sorted(set(df["objective"]))
    form = "; ".join(OBJECTIVES.get(o, o) for o in objectives)
    fig.suptitle(title or f"{_PANEL_NAMES.get(metric, metric)} of UA, RA, TA, MIA vs (λ1, λ2); ★ = paper's "
                 f"choice\nobjective: {form}", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Grad-CAM numbers
# (These two helpers belong next to fvlib.cam.panel; they live here until cam.py can take them.)

def pick_images(data: ImageData, mask: torch.Tensor, n: int, seed: int = 0,
                spread_classes: bool = False, model: nn.Module | None = None) -> torch.Tensor:
    """n training-image indices (CPU int64) drawn at random from mask (N_train,) bool.

    spread_classes: round-robin over the classes present (Fig. 5 shows retain images of different
    classes). model: prefer images it classifies correctly (so θ_o's ✓ is the starting point);
    misclassified ones are used only if too few are correct.
    """
    idx = mask.nonzero().flatten().cpu()
    idx = idx[torch.randperm(len(idx), generator=generator(seed, "gradcam-images"))]
    if model is not None and len(idx):
        pred = metrics.logits(model, data.train_x[idx.to(data.device)]).argmax(1).cpu()
        ok = pred == data.train_y[idx.to(data.device)].cpu()
        idx = torch.cat([idx[ok], idx[~ok]])  # stable: keeps the random order within each group
    if spread_classes:
        y = data.train_y[idx.to(data.device)].cpu()
        order = list(dict.fromkeys(y.tolist()))
        queues = {c: idx[y == c].tolist() for c in order}
        picked: list[int] = []
        while len(picked) < min(n, len(idx)):
            for c in order:
                if queues[c] and len(picked) < n:
                    picked.append(queues[c].pop(0))
        return torch.tensor(picked, dtype=torch.long)
    return idx[:n].clone()


def saliency_shift_table(methods: dict[str, tuple[nn.Module, torch.Tensor | None]],
                         image_sets: dict[str, tuple[torch.Tensor, torch.Tensor]], arch: str,
                         reference: str | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Mean Grad-CAM shift (1 − cosine vs the reference method's map; default: the first method).

    methods: name -> (model, δ or None), as cam.panel; image_sets: set name (e.g. "forget",
    "retain") -> (uint8 images (N, H, W, 3), labels (N,)). Target = each method's predicted class.
    Returns one row per method with, for each set S: shift_S (mean), shift_S_std and acc_S (share
    of predictions equal to the label: low on forget images = forgotten).
    """
    ref = reference if reference is not None else next(iter(methods))
    if ref not in methods:
        raise ValueError(f"reference {ref!r} is not one of the methods {list(methods)}")
    table = pd.DataFrame(index=pd.Index(list(methods), name="method"))
    for set_name, (images, labels) in image_sets.items():
        y = torch.as_tensor(labels).cpu()
        out = {name: cam.cam_and_logits(model, images, arch, None, delta, batch_size=batch_size)
               for name, (model, delta) in methods.items()}
        for name, (maps, logits) in out.items():
            shift = cam.saliency_shift(maps, out[ref][0])
            table.loc[name, f"shift_{set_name}"] = float(shift.mean())
            table.loc[name, f"shift_{set_name}_std"] = float(shift.std(unbiased=False))
            table.loc[name, f"acc_{set_name}"] = float((logits.argmax(1) == y).float().mean())
        table[f"n_{set_name}"] = len(y)
    return table
