"""Shift robustness (paper Sec. 4, Fig. 2 / A1): every system evaluated on shifted data.

Shifted evaluation (docs/protocol.md P8): the forget, retain and test sets AND the MIA's members
(retain), non-members (test) and targets (forget) all use the shifted images; a forget vector's δ
is added on top of the shifted image (it is inside the system). Corruptions (P8.1 GN, P8.2 ET) are
rendered once per (data, seed, params) and cached; PGD (P8.3) is white-box against the system
evaluated (so it sees δ) unless cfg.attack_original, and is quantised to uint8 like the paper's
saved image folders. Records: kind "shift" in the one record store (fvlib.records).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from fvlib import labels, metrics, mia, records, splits, study
from fvlib import shifts as shiftlib
from fvlib.data import ImageData
from fvlib.runtime import generator
from fvlib.shifts import ShiftConfig

if TYPE_CHECKING:
    from fvlib.experiment import Experiment
    from fvlib.systems import System

SHIFT_ORDER = tuple(labels.SHIFTS)  # benign, gn1, gn2, et1, et2, pgd
SHIFT_METHODS = ("original", "retrain", "ft", "rl", "ga")


# ----------------------------------------------------------------------------- conditions

def shifted_view(name: str, data: ImageData, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                 system: nn.Module | None = None, original: nn.Module | None = None,
                 train_idx: torch.Tensor | None = None,
                 test_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted (train, test) uint8 images (n, H, W, 3): every row, or only train_idx / test_idx.

    Corruptions come from the cache (rendered on the whole set, then indexed); PGD attacks only the
    requested rows, white-box on `system` (δ included) or on θ_o (`original`) if cfg.attack_original.
    """
    tr = slice(None) if train_idx is None else train_idx
    te = slice(None) if test_idx is None else test_idx
    if name == "benign":
        return data.train_x[tr], data.test_x[te]
    if name in shiftlib.CORRUPTIONS:
        return (shiftlib.render_cached(name, data.fingerprint, "train", data.train_x, seed, cfg)[tr],
                shiftlib.render_cached(name, data.fingerprint, "test", data.test_x, seed, cfg)[te])
    if name != "pgd":
        raise ValueError(f"unknown shift {name!r}; valid: {', '.join(SHIFT_ORDER)}")
    x, n = torch.cat([data.train_x[tr], data.test_x[te]]), len(data.train_x[tr])
    y = torch.cat([data.train_y[tr], data.test_y[te]])
    adv = shiftlib.render("pgd", x, seed, model=system, y=y, original=original,
                          cfg=dataclasses.replace(cfg, pgd_quantize=True))  # 8-bit, as saved sets
    return adv[:n], adv[n:]


def shift_params(shift: str, cfg: ShiftConfig) -> tuple:
    """The ShiftConfig fields that determine one shift (part of a record's key)."""
    return {"benign": (), "gn1": (cfg.gn1_sigma,), "gn2": (cfg.gn2_sigma,), "et1": cfg.et1,
            "et2": cfg.et2, "pgd": (cfg.pgd_eps, cfg.pgd_steps, cfg.pgd_step_size,
                                    cfg.pgd_random_start, cfg.attack_original)}[shift]


def pgd_cap(ex: "Experiment", max_eval: int = 0) -> int | None:
    """Images PGD attacks per set and system: max_eval > 0 as given, −1 every image (None),
    0 the profile's `pgd_max_eval` (P8.3: the attack cost cap)."""
    if max_eval:
        return None if max_eval < 0 else max_eval
    return ex.profile.pgd_max_eval


def subsample(mask: torch.Tensor, cap: int | None, g: torch.Generator) -> torch.Tensor:
    """Indices (n,) of a mask, at most cap of them drawn at random with g (sorted)."""
    idx = mask.nonzero().flatten()
    if cap is None or len(idx) <= cap:
        return idx
    pick = torch.randperm(len(idx), generator=g)[:cap].sort().values
    return idx[pick.to(idx.device)]


def shifted_data(system: nn.Module, data: ImageData, split: splits.Split, shift: str, seed: int = 0,
                 cfg: ShiftConfig = ShiftConfig(), original: nn.Module | None = None,
                 max_eval: int | None = None) -> tuple[ImageData, splits.Split]:
    """(data, split) where every set is shifted: train = D_f then D_r, test = the TA set.

    max_eval (PGD only; None: all): attack at most this many images of each of the forget, retain
    and test sets (a seeded random subset) to bound the per-system attack cost.
    """
    g = generator(seed, "shift-max-eval")
    cap = max_eval if shift == "pgd" else None
    forget, retain = subsample(split.forget, cap, g), subsample(split.retain, cap, g)
    tr, te = torch.cat([forget, retain]), subsample(split.test_eval, cap, g)
    xtr, xte = shifted_view(shift, data, seed, cfg, system, original, tr, te)
    view = dataclasses.replace(data, train_x=xtr, train_y=data.train_y[tr], test_x=xte,
                               test_y=data.test_y[te], fingerprint=f"{data.fingerprint}-{shift}")
    is_forget = torch.arange(len(tr), device=tr.device) < len(forget)
    all_test = torch.ones(len(te), dtype=torch.bool, device=te.device)
    return view, splits.Split(split.scenario, split.trial, is_forget, all_test, ~all_test, split.classes)


def evaluate_shifted(system: nn.Module, data: ImageData, split: splits.Split, shift: str, seed: int = 0,
                     cfg: ShiftConfig = ShiftConfig(), original: nn.Module | None = None,
                     max_eval: int | None = None, mia: metrics.MIAConfig | None = metrics.MIAConfig(),
                     batch_size: int = 1024) -> dict[str, float]:
    """UA, RA, TA, MIA, MIA_loss in [0, 1] of a system with every evaluation and MIA set shifted."""
    view, compact = shifted_data(system, data, split, shift, seed, cfg, original, max_eval)
    return metrics.evaluate(system, view, compact, mia, batch_size=batch_size)


# ----------------------------------------------------------------------------- records

def shift_study(ex: "Experiment", methods: Sequence[str] = SHIFT_METHODS, shifts: Sequence[str] = SHIFT_ORDER,
                trials: Sequence[int] | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                max_eval: int = 0, progress: bool = True) -> pd.DataFrame:
    """Class-wise records (method, trial, shift, UA, RA, TA, MIA, MIA_loss), cached per record.

    'original' is θ_o itself; 'fv' is θ_o behind δ (added on top of the shifted image).
    max_eval: PGD images per set and system (0: the profile's pgd_max_eval, −1: all).
    """
    split_list = ex.splits("classwise", trials)
    mcfg, cap, bs = metrics.MIAConfig(), pgd_cap(ex, max_eval), ex.profile.eval_batch_size

    def key_extra(s: str) -> tuple:
        return s, shift_params(s, cfg), seed, cap if s == "pgd" else None, mcfg

    def compute(system: "System", split: splits.Split, s: str):
        view, compact = shifted_data(system.module, ex.data, split, s, seed, cfg, ex.original,
                                     cap if s == "pgd" else None)
        acc, fut = metrics.evaluate_async(system.module, view, compact, mcfg, batch_size=bs, pool=pool)
        return {"shift": s, "max_eval": cap if s == "pgd" else None, **acc}, fut
    rows, pool = [], mia.pool(study.mia_workers(ex))  # SVC fits beside the GPU, as in the study
    try:
        for method in methods:
            rows += records.grid(ex, "shift", method, split_list, list(shifts), compute, key_extra,
                                 progress=progress)
    finally:
        if pool is not None:
            pool.shutdown()
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- summaries and plots

def shift_summary(recs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std (%) of one metric as text: rows = methods, columns = shift conditions."""
    g = recs.groupby(["method", "shift"], sort=False)[metric]
    cell = lambda v: f"{100 * v.mean():.2f}±{100 * v.std(ddof=0):.2f}"  # noqa: E731
    table = g.apply(cell).unstack("shift")
    table = table[[s for s in SHIFT_ORDER if s in table.columns]].rename(columns=labels.SHIFTS)
    return table.rename(index=labels.method)


def shift_overview(recs: pd.DataFrame) -> pd.DataFrame:
    """Per method, mean (%) of each metric on benign data and averaged over the shifted conditions."""
    benign = recs["shift"] == "benign"
    cols = ["UA", "RA", "TA", "MIA"]
    out = pd.concat({"benign": recs[benign].groupby("method", sort=False)[cols].mean(),
                     "shifted": recs[~benign].groupby("method", sort=False)[cols].mean()}, axis=1)
    return (out.swaplevel(axis=1)[cols] * 100).rename(index=labels.method)


def band(ax, x, frame: pd.DataFrame, label: str) -> dict:
    """Mean line with a ±std band (clipped to 0–100 %) from a frame with columns mean, std."""
    mu, sd = frame["mean"].to_numpy(), frame["std"].to_numpy()
    ax.plot(x, mu, marker="o", ms=3, label=label)
    ax.fill_between(x, np.clip(mu - sd, 0, 100), np.clip(mu + sd, 0, 100), alpha=0.2)
    return {"mean": mu.tolist(), "std": sd.tolist()}


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
            stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0)}).reindex(conds) * 100
            numbers[metric][labels.method(m)] = band(ax, range(len(conds)), stats, labels.method(m))
        ax.set_xticks(range(len(conds)), numbers["conditions"], fontsize=7)
        ax.set(title=f"({'abcdefgh'[j]}) {metric}", ylabel=f"{metric} (%)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers
