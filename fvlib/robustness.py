"""Shift robustness (paper Sec. 4, Fig. 2 / A1), transfer to unseen forget sets (Table 2) and a
white-box "restore" attack on forget vectors (the limitation the paper states in its conclusion).

Shifted evaluation (reference notes §8): forget, retain and test sets AND the MIA's members (retain),
non-members (test) and targets (forget) all use the shifted images; a forget vector δ is added on
top of the shifted image. Corruptions are rendered once per (data, seed, params) and cached; PGD is
white-box against the system being evaluated (model, plus δ for FV) unless cfg.attack_original, and
is quantised to uint8 like the paper's saved image folders. Every record is a JSON file under
cache_dir()/records_<kind>/ named by a hash of everything that determines it (atomic, resumable).
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

from fvlib import metrics, models, splits, study
from fvlib import shifts as shiftlib
from fvlib.cache import cache_dir, config_hash, write_json
from fvlib.config import Profile
from fvlib.data import ImageData
from fvlib.provenance import git_sha
from fvlib.runtime import autocast, device_name, generator, timer
from fvlib.shifts import ShiftConfig

SHIFT_ORDER = ("benign", "gn1", "gn2", "et1", "et2", "pgd")
SHIFT_LABELS = {"benign": "Benign", "gn1": "GN1", "gn2": "GN2", "et1": "ET1", "et2": "ET2", "pgd": "PGD"}
SHIFT_METHODS = ("original", "retrain", "ft", "rl", "ga")
LABELS = {"original": "Origin", **study.LABELS}
WHITEBOX_EPS = tuple(e / 255 for e in (0, 1, 2, 4, 8))
# Per-profile default cap on the images PGD attacks per set and model (attack cost; see
# evaluate_shifted / whitebox_curve max_eval); other profiles: 2,000 per set.
PGD_MAX_EVAL = {"smoke": 64}
TRANSFER_COLUMNS = {"test_class": "D'_f from testing class", "gn1": "D_f perturbed by GN1",
                    "et1": "D_f perturbed by ET1"}
# Paper Table 2 (CIFAR-10, ResNet-18; reference notes §11): (mean, std) in % per column above.
PAPER_TABLE2 = {
    "retrain": ((100.00, 0.00), (64.73, 3.36), (81.43, 0.28)),
    "ft": ((21.44, 1.11), (56.75, 1.40), (81.79, 0.18)),
    "rl": ((27.90, 5.70), (61.84, 2.45), (81.15, 0.20)),
    "ga": ((73.95, 0.60), (55.20, 2.59), (82.17, 0.76)),
    "neggrad_plus": ((93.86, 10.93), (57.81, 1.76), (81.73, 0.65)),
    "salun": ((97.55, 1.37), (73.15, 4.25), (80.27, 3.56)),
    "scrub": ((93.65, 2.65), (61.95, 0.86), (81.18, 0.62)),
    "fv": ((98.26, 0.35), (78.32, 1.03), (85.03, 0.91)),
}


# ----------------------------------------------------------------------------- shifted views

def shifted_view(name: str, data: ImageData, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                 model: nn.Module | None = None, original: nn.Module | None = None,
                 delta: torch.Tensor | None = None, train_idx: torch.Tensor | None = None,
                 test_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted (train, test) uint8 images (n, H, W, 3): every row, or only train_idx / test_idx.

    Corruptions come from the cache (rendered on the whole set, then indexed); PGD attacks only the
    requested rows, white-box on (model, δ (3, H, W)) or on θ_o (original) if cfg.attack_original.
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
    adv = shiftlib.render("pgd", x, seed, model=model, y=y, delta=delta, original=original,
                          cfg=dataclasses.replace(cfg, pgd_quantize=True))  # 8-bit, as saved sets
    return adv[:n], adv[n:]


def pgd_max_eval(profile: Profile, override: int = 0) -> int | None:
    """max_eval for PGD: override > 0 as given, −1 = every image (None), 0 = the profile default."""
    if override:
        return None if override < 0 else override
    return PGD_MAX_EVAL.get(profile.name, 2000)


def _rows(mask: torch.Tensor, cap: int | None, g: torch.Generator) -> torch.Tensor:
    """Indices (n,) of a mask, at most cap of them drawn at random (sorted)."""
    idx = mask.nonzero().flatten()
    if cap is None or len(idx) <= cap:
        return idx
    pick = torch.randperm(len(idx), generator=g)[:cap].sort().values
    return idx[pick.to(idx.device)]


def evaluate_shifted(model: nn.Module, data: ImageData, split: splits.Split, shift: str,
                     delta: torch.Tensor | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                     original: nn.Module | None = None, max_eval: int | None = None,
                     mia: metrics.MIAConfig | None = metrics.MIAConfig(),
                     batch_size: int = 1024) -> dict[str, float]:
    """UA, RA, TA, MIA, MIA_loss in [0, 1] with every evaluation and MIA set shifted (§8).

    max_eval (PGD only, off by default): attack at most this many images of each of the forget,
    retain and test sets (a seeded random subset) to bound the per-model attack cost.
    """
    g = generator(seed, "shift-max-eval")
    cap = max_eval if shift == "pgd" else None
    forget, retain = _rows(split.forget, cap, g), _rows(split.retain, cap, g)
    tr, te = torch.cat([forget, retain]), _rows(split.test_eval, cap, g)
    xtr, xte = shifted_view(shift, data, seed, cfg, model, original, delta, tr, te)
    view = dataclasses.replace(data, train_x=xtr, train_y=data.train_y[tr], test_x=xte,
                               test_y=data.test_y[te], fingerprint=f"{data.fingerprint}-{shift}")
    is_forget = torch.arange(len(tr), device=tr.device) < len(forget)
    all_test = torch.ones(len(te), dtype=torch.bool, device=te.device)
    compact = splits.Split(split.scenario, split.trial, is_forget, all_test, ~all_test, split.classes)
    return metrics.evaluate(model, view, compact, delta, mia, batch_size=batch_size)


# ----------------------------------------------------------------------------- records

def _read(kind: str, key: str) -> dict | None:
    path = cache_dir() / f"records_{kind}" / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _write(kind: str, key: str, rec: dict, profile: Profile, data: ImageData) -> dict:
    rec = {**rec, "device": device_name(data.device), "config_hash": key, "git_sha": git_sha(),
           "profile": profile.name, "dataset": data.name}
    write_json(Path(cache_dir()) / f"records_{kind}" / f"{key}.json", rec)
    return rec


def _key(kind: str, profile: Profile, data: ImageData, original: nn.Module, method: str,
         split: splits.Split, *extra) -> str:
    """Hash of (data, θ_o, method and its config, split, extra settings)."""
    mcfg = None if method == "original" else study.method_config(profile, method, split.scenario)
    return config_hash(f"{kind}-record", data.fingerprint, models.fingerprint(original),
                       profile.model, method, mcfg, split.hash, *extra)


def systems(method: str, original: nn.Module, data: ImageData, split_list: Sequence[splits.Split],
            profile: Profile) -> list[tuple[nn.Module, torch.Tensor | None]]:
    """(model, δ or None) per split: θ_o for 'original', (θ_o, δ) for 'fv', else the unlearned model."""
    if not split_list:
        return []
    if method == "original":
        return [(original, None)] * len(split_list)
    if method == "fv":
        return [(original, fv.delta) for fv in study.forget_vectors(original, data, split_list, profile,
                                                                    progress=False)]
    return [(study.unlearned_model(method, original, data, s, profile)[0], None) for s in split_list]


def _trials(profile: Profile, trials: Sequence[int] | None) -> list[int]:
    return list(range(profile.trials)) if trials is None else list(trials)


def _grid(kind: str, profile: Profile, data: ImageData, original: nn.Module, method: str,
          split_list: Sequence[splits.Split], items: Sequence, key_extra, compute) -> list[dict]:
    """Cached records of one method over splits × items (resumable): a record is computed only if
    its file is missing, and a model/vector is built only for splits with something missing.
    key_extra(item) -> tuple of settings for the key; compute(model, δ, split, item) -> dict."""
    keys = [{it: _key(kind, profile, data, original, method, sp, *key_extra(it)) for it in items}
            for sp in split_list]
    done = [{it: r for it, k in ks.items() if (r := _read(kind, k)) is not None} for ks in keys]
    todo = [i for i, d in enumerate(done) if len(d) < len(items)]
    built = systems(method, original, data, [split_list[i] for i in todo], profile)
    for i, (model, delta) in zip(todo, built):
        for it in (it for it in items if it not in done[i]):
            with timer(data.device) as t:
                res = compute(model, delta, split_list[i], it)
            rec = {"method": method, "scenario": split_list[i].scenario, "trial": split_list[i].trial,
                   **res, "seconds": t["seconds"], "split_hash": split_list[i].hash}
            done[i][it] = _write(kind, keys[i][it], rec, profile, data)
    return [d[it] for d in done for it in items]


def _shift_params(shift: str, cfg: ShiftConfig) -> tuple:
    """The ShiftConfig fields that determine one shift (part of a record's key)."""
    return {"benign": (), "gn1": (cfg.gn1_sigma,), "gn2": (cfg.gn2_sigma,), "et1": cfg.et1,
            "et2": cfg.et2, "pgd": (cfg.pgd_eps, cfg.pgd_steps, cfg.pgd_step_size,
                                    cfg.pgd_random_start, cfg.attack_original)}[shift]


def shift_study(profile: Profile, data: ImageData, original: nn.Module,
                methods: Sequence[str] = SHIFT_METHODS, shifts: Sequence[str] = SHIFT_ORDER,
                trials: Sequence[int] | None = None, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                max_eval: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Class-wise records (method, trial, shift, UA, RA, TA, MIA, MIA_loss), cached per record.

    'original' is θ_o itself, 'fv' is θ_o with δ (added on top of the shifted image)."""
    split_list = [splits.for_trial(data, "classwise", t) for t in _trials(profile, trials)]
    mia, rows = metrics.MIAConfig(), []

    def key_extra(s: str) -> tuple:
        return s, _shift_params(s, cfg), seed, max_eval if s == "pgd" else None, mia

    def compute(model, delta, split, s):
        return {"shift": s, **evaluate_shifted(model, data, split, s, delta, seed, cfg, original,
                                               max_eval, mia, profile.eval_batch_size)}
    for method in tqdm(methods, desc="shift study", disable=not progress):
        rows += _grid("shift", profile, data, original, method, split_list, shifts, key_extra, compute)
    return pd.DataFrame(rows)


def shift_summary(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std (%) of one metric: rows = methods, columns = shift conditions."""
    g = records.groupby(["method", "shift"], sort=False)[metric]
    cell = lambda v: f"{100 * v.mean():.2f}±{100 * v.std(ddof=0):.2f}"  # noqa: E731
    table = g.apply(cell).unstack("shift")
    table = table[[s for s in SHIFT_ORDER if s in table.columns]].rename(columns=SHIFT_LABELS)
    return table.rename(index=LABELS)


def shift_overview(records: pd.DataFrame) -> pd.DataFrame:
    """Per method, mean (%) of each metric on benign data and averaged over the shifted conditions."""
    benign = records["shift"] == "benign"
    cols = ["UA", "RA", "TA", "MIA"]
    out = pd.concat({"benign": records[benign].groupby("method", sort=False)[cols].mean(),
                     "shifted": records[~benign].groupby("method", sort=False)[cols].mean()}, axis=1)
    return (out.swaplevel(axis=1)[cols] * 100).rename(index=LABELS)


# ----------------------------------------------------------------------------- Table 2

def transfer_records(profile: Profile, data: ImageData, original: nn.Module,
                     methods: Sequence[str] = study.METHOD_ORDER, trials: Sequence[int] | None = None,
                     seed: int = 0, cfg: ShiftConfig = ShiftConfig(), progress: bool = True) -> pd.DataFrame:
    """Tidy (method, trial, condition, UA): UA on the test images of the forgotten class
    (condition 'test_class', class-wise trial) and on GN1(D_f) / ET1(D_f) ('gn1', 'et1', random
    forgetting trial); for FV, δ is added on top of the (shifted) image."""
    trials, rows, bs = _trials(profile, trials), [], profile.eval_batch_size
    cw = [splits.for_trial(data, "classwise", t) for t in trials]
    rd = [splits.for_trial(data, "random", t, profile.percent) for t in trials]

    def test_class(model, delta, split, _c):
        x, y = data.test_x[split.test_forget], data.test_y[split.test_forget]
        return {"condition": "test_class", "UA": 1.0 - metrics.accuracy(model, x, y, delta, batch_size=bs)}

    def shifted_forget(model, delta, split, c):
        idx = split.forget.nonzero().flatten()
        x = shifted_view(c, data, seed, cfg, train_idx=idx)[0]
        return {"condition": c, "UA": 1.0 - metrics.accuracy(model, x, data.train_y[idx], delta,
                                                              batch_size=bs)}
    for method in tqdm(methods, desc="transfer", disable=not progress):
        rows += _grid("transfer", profile, data, original, method, cw, ["test_class"],
                      lambda c: (c,), test_class)
        rows += _grid("transfer", profile, data, original, method, rd, ["gn1", "et1"],
                      lambda c: (c, _shift_params(c, cfg), seed), shifted_forget)
    return pd.DataFrame(rows)


def transfer_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Numeric Table 2 (%): per column <c>_mean, <c>_std, <c>_paper, <c>_diff (ours − paper)."""
    g = records.groupby(["method", "condition"], sort=False)["UA"]
    mean, std = g.mean().unstack() * 100, g.std(ddof=0).unstack() * 100
    methods = list(dict.fromkeys(records["method"]))
    out = pd.DataFrame(index=methods)
    for j, c in enumerate(TRANSFER_COLUMNS):
        out[f"{c}_mean"], out[f"{c}_std"] = mean[c].reindex(methods), std[c].reindex(methods)
        out[f"{c}_paper"] = [PAPER_TABLE2[m][j][0] if m in PAPER_TABLE2 else np.nan for m in methods]
        out[f"{c}_diff"] = out[f"{c}_mean"] - out[f"{c}_paper"]
    out.index = [LABELS.get(m, m) for m in methods]
    out.index.name = "method"
    return out


def transfer_table(profile: Profile, data: ImageData, original: nn.Module,
                   methods: Sequence[str] = study.METHOD_ORDER, trials: Sequence[int] | None = None,
                   seed: int = 0, cfg: ShiftConfig = ShiftConfig(), progress: bool = True) -> pd.DataFrame:
    """Table 2 (numeric, %): transfer_records summarised next to the paper's values."""
    return transfer_summary(transfer_records(profile, data, original, methods, trials, seed, cfg, progress))


def format_transfer(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as text: per column 'ours mean±std', 'paper mean±std', 'Δ (ours − paper)'."""
    inv = {v: k for k, v in LABELS.items()}
    paper = [PAPER_TABLE2.get(inv.get(i, i)) for i in summary.index]
    out = pd.DataFrame(index=summary.index)
    for j, (c, name) in enumerate(TRANSFER_COLUMNS.items()):
        out[name] = [f"{m:.2f}±{s:.2f}" for m, s in zip(summary[f"{c}_mean"], summary[f"{c}_std"])]
        out[f"{name} (paper)"] = [f"{p[j][0]:.2f}±{p[j][1]:.2f}" if p else "–" for p in paper]
        out[f"{name} Δ"] = [f"{d:+.2f}" if np.isfinite(d) else "–" for d in summary[f"{c}_diff"]]
    return out


# ----------------------------------------------------------------------------- white-box restore

@torch.no_grad()
def _accuracy_float(model: nn.Module, xf: torch.Tensor, y: torch.Tensor, delta, batch_size: int) -> float:
    """Accuracy of float images xf (N, 3, H, W) with δ (3, H, W) added (as metrics.logits does)."""
    model.eval()
    hits = 0
    for xb, yb in zip(xf.split(batch_size), y.split(batch_size)):
        xb = xb if delta is None else xb + delta.to(xb.device, xb.dtype)
        with autocast(xb.device):
            hits += (model(xb).float().argmax(1) == yb).sum().item()
    return hits / max(len(y), 1)


def whitebox_curve(profile: Profile, data: ImageData, original: nn.Module,
                   methods: Sequence[str] = ("fv", "retrain", "salun", "scrub"),
                   eps: Sequence[float] = WHITEBOX_EPS, trials: Sequence[int] | None = None,
                   steps: int = 7, seed: int = 0, max_eval: int | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Forget-set accuracy (method, trial, eps, forget_acc) under an ℓ∞ PGD adversary who knows δ
    and minimises the true-label CE on D_f (restore=True; `steps` steps of max(ε/4, 0.5/255), random
    start, float images); class-wise trials. ε = 0 is the plain forget accuracy (1 − UA).
    max_eval (off by default): attack a seeded random subset of at most this many forget images."""
    split_list = [splits.for_trial(data, "classwise", t) for t in _trials(profile, trials)]
    rows = []

    def compute(model, delta, split, e):
        idx = _rows(split.forget, max_eval, generator(seed, "whitebox-max-eval"))
        x, y = data.train_x[idx], data.train_y[idx]
        g = generator(seed, f"whitebox-{e:.6f}", data.device)
        xa = shiftlib.pgd(model, x, y, e, steps if e > 0 else 0, max(e / 4, 0.5 / 255), delta=delta,
                          restore=True, g=g, random_start=e > 0)
        return {"eps": float(e), "forget_acc": _accuracy_float(model, xa, y, delta, profile.eval_batch_size)}
    for method in tqdm(methods, desc="white-box", disable=not progress):
        rows += _grid("whitebox", profile, data, original, method, split_list, [float(e) for e in eps],
                      lambda e: (e, steps, seed, max_eval), compute)
    return pd.DataFrame(rows)


def whitebox_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean forget-set accuracy (%): rows = methods, columns = ε in units of 1/255."""
    table = curve.assign(eps_255=(curve["eps"] * 255).round(3)).pivot_table(
        index="method", columns="eps_255", values="forget_acc", aggfunc="mean", sort=False) * 100
    table.columns = [int(c) if float(c).is_integer() else c for c in table.columns]
    return table.rename(index=LABELS)


# ----------------------------------------------------------------------------- plots

def _band(ax, x, frame: pd.DataFrame, label: str) -> dict:
    """Mean line with a ±std band from a frame with columns mean, std (same order as x)."""
    mu, sd = frame["mean"].to_numpy(), frame["std"].to_numpy()
    ax.plot(x, mu, marker="o", ms=3, label=label)
    ax.fill_between(x, np.clip(mu - sd, 0, 100), np.clip(mu + sd, 0, 100), alpha=0.2)  # % range
    return {"mean": mu.tolist(), "std": sd.tolist()}


def plot_shift_curves(records: pd.DataFrame, methods: Sequence[str],
                      metric_order: Sequence[str] = ("TA", "RA", "UA", "MIA")) -> tuple[plt.Figure, dict]:
    """Fig. 2 / A1: one panel per metric, x = shift condition, a ±std band per method."""
    conds = [s for s in SHIFT_ORDER if s in set(records["shift"])]
    fig, axes = plt.subplots(1, len(metric_order), figsize=(2.8 * len(metric_order), 2.6), squeeze=False)
    numbers = {"conditions": [SHIFT_LABELS[c] for c in conds]}
    for j, (ax, metric) in enumerate(zip(axes[0], metric_order)):
        numbers[metric] = {}
        for m in methods:
            g = records[records["method"] == m].groupby("shift")[metric]
            stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0)}).reindex(conds) * 100
            numbers[metric][LABELS.get(m, m)] = _band(ax, range(len(conds)), stats, LABELS.get(m, m))
        ax.set_xticks(range(len(conds)), numbers["conditions"], fontsize=7)
        ax.set(title=f"({'abcdefgh'[j]}) {metric}", ylabel=f"{metric} (%)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers


def plot_whitebox(curve: pd.DataFrame) -> tuple[plt.Figure, dict]:
    """Forget-set accuracy (%) vs ε·255 per method, ±std over trials."""
    fig, ax = plt.subplots(figsize=(4, 2.8))
    numbers = {}
    for m in curve["method"].unique():
        g = curve[curve["method"] == m].groupby("eps")["forget_acc"]
        stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0)}).sort_index() * 100
        x = (stats.index.to_numpy() * 255).round(3)
        numbers[LABELS.get(m, m)] = {"eps_255": x.tolist(), **_band(ax, x, stats, LABELS.get(m, m))}
    ax.set(xlabel="adversary budget ε (×1/255, ℓ∞, 7-step PGD)", ylabel="forget-set accuracy (%)",
           ylim=(-3, 103),
           title="White-box restore attack on D_f")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers
