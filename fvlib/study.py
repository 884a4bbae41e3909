"""The study runner: scenario x methods x trials -> cached, resumable records -> Table 1 / A1.

Trial i uses the same split for every method (class-wise: class i; random: seed i). Each
(method, trial) record is written atomically to data/cache/records/<key>.json, keyed by a hash of
everything that determines it; a killed run recomputes nothing that finished. The forget vector
("fv") is one of the methods: its vectors for all missing trials are solved in one batched pass.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fvlib import metrics, models, solve, splits, unlearn
from fvlib.cache import cache_dir, cached_tensors, config_hash, write_json
from fvlib.config import Profile
from fvlib.data import ImageData
from fvlib.forget_vector import ForgetVector
from fvlib.provenance import git_sha
from fvlib.runtime import device_name, prepare_model, timer

METHOD_ORDER = ("retrain", "ft", "rl", "ga", "neggrad_plus", "salun", "scrub", "fv")
LABELS = {"retrain": "Retrain", "ft": "FT", "rl": "RL", "ga": "GA", "neggrad_plus": "NegGrad+",
          "salun": "SalUn", "scrub": "SCRUB", "fv": "FV (ours)", "cu_fv": "CU-FV"}


def _records_dir() -> Path:
    path = cache_dir() / "records"
    path.mkdir(parents=True, exist_ok=True)
    return path


def method_config(profile: Profile, method: str, scenario: str):
    """The config that determines a method's result (part of its cache key)."""
    if method == "fv":
        return profile.fv_for(scenario)
    if method == "cu_fv":  # class-wise basis vectors + the weights' optimisation
        return (profile.fv, profile.fv_random)
    ucfg = profile.unlearn_cfg()
    return ucfg.retrain if method == "retrain" else ucfg


def record_key(profile: Profile, data: ImageData, original: nn.Module, method: str,
               split: splits.Split) -> str:
    """Hash of (data, θ_o, method, its config, split): the identity of one record."""
    return config_hash("record", data.fingerprint, models.fingerprint(original), profile.model,
                       method, method_config(profile, method, split.scenario), split.hash)


def read_record(key: str) -> dict | None:
    path = _records_dir() / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_record(method: str, split: splits.Split, res: dict, seconds: float, key: str,
                 profile: Profile, data: ImageData, **extra) -> dict:
    """Write one result record atomically (keyed by its config hash) and return it."""
    rec = {"method": method, "scenario": split.scenario, "trial": split.trial,
           "split_hash": split.hash, **{k: res[k] for k in ("UA", "MIA", "MIA_loss", "RA", "TA")},
           "seconds": seconds, "device": device_name(data.device), "config_hash": key,
           "git_sha": git_sha(), "profile": profile.name, "dataset": data.name, **extra}
    write_json(_records_dir() / f"{key}.json", rec)
    return rec


def unlearned_model(method: str, original: nn.Module, data: ImageData, split: splits.Split,
                    profile: Profile) -> tuple[nn.Module, float, bool]:
    """A baseline's unlearned model through the cache -> (model, seconds to compute, cache hit)."""
    ucfg = profile.unlearn_cfg()
    key = config_hash("unlearned", data.fingerprint, models.fingerprint(original), method,
                      method_config(profile, method, split.scenario), split.hash)

    def compute():
        with timer(data.device) as t:
            new = unlearn.run(method, original, data, split, ucfg)
        return dict(new.state_dict()), {"seconds": t["seconds"], "method": method}
    state, meta, hit = cached_tensors(f"unlearned-{method}", key, compute)
    model = models.build(profile.model, data.num_classes, data.spec.mean, data.spec.std)
    model.load_state_dict(state)
    return prepare_model(model, data.device).eval(), meta["seconds"], hit


def forget_vectors(original: nn.Module, data: ImageData, split_list: Sequence[splits.Split],
                   profile: Profile, progress: bool = True) -> list[ForgetVector]:
    """One forget vector per split through the cache; missing ones are solved in one batch."""
    cfg = profile.fv_for(split_list[0].scenario)
    fp = models.fingerprint(original)
    paths = [cache_dir() / "vectors" / f"fv-{config_hash('fv', data.fingerprint, fp, cfg, s.hash)}"
             f".safetensors" for s in split_list]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        solved = solve.solve_many(original, data, [split_list[i] for i in missing], cfg, progress)
        for i, fv in zip(missing, solved):
            fv.save(paths[i])
    return [ForgetVector.load(p, data.image_shape, data.name).to(data.device) for p in paths]


def run_study(profile: Profile, data: ImageData, original: nn.Module, scenario: str,
              methods: Sequence[str] = METHOD_ORDER, trials: Sequence[int] | None = None,
              progress: bool = True) -> pd.DataFrame:
    """Every (method, trial) record of one scenario (cached/resumed), as a tidy DataFrame."""
    trials = list(range(profile.trials)) if trials is None else list(trials)
    split_list = [splits.for_trial(data, scenario, t, profile.percent) for t in trials]
    for s in split_list:  # every method and anyone outside can rebuild exactly these sets
        path = cache_dir() / "manifests" / f"{data.name}-{s.name}-{s.hash}.json"
        if not path.exists():
            write_json(path, s.manifest())
    mia = metrics.MIAConfig()
    rows = []
    for method in tqdm(methods, desc=f"{scenario} study", disable=not progress):
        rows += _method_records(method, profile, data, original, split_list, mia, progress)
    return pd.DataFrame(rows)


def _method_records(method, profile, data, original, split_list, mia, progress) -> list[dict]:
    keys = [record_key(profile, data, original, method, s) for s in split_list]
    done = {k: r for k in keys if (r := read_record(k)) is not None}
    todo = [(k, s) for k, s in zip(keys, split_list) if k not in done]
    if method == "fv" and todo:
        with timer(data.device) as t:
            vectors = forget_vectors(original, data, [s for _, s in todo], profile, progress)
        for (k, s), fv in zip(todo, vectors):
            res = metrics.evaluate(original, data, s, fv.delta, mia, batch_size=profile.eval_batch_size)
            done[k] = write_record(method, s, res, fv.meta.get("seconds", t["seconds"] / len(todo)),
                              k, profile, data)
    for k, s in (todo if method != "fv" else []):
        model, seconds, _ = unlearned_model(method, original, data, s, profile)
        res = metrics.evaluate(model, data, s, None, mia, batch_size=profile.eval_batch_size)
        done[k] = write_record(method, s, res, seconds, k, profile, data)
    return [done[k] for k in keys]


# ----------------------------------------------------------------------------- tables

def summary(records: pd.DataFrame, metric_cols=metrics.METRICS) -> pd.DataFrame:
    """Mean and std (in %) per method and metric, Avg.Gap vs Retrain (recomputed), minutes."""
    g = records.groupby("method", sort=False)
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
    table = pd.DataFrame(index=[LABELS.get(m, m) for m in summ.index])
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


def runtime_table(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table A1 analogue: minutes per method (mean over trials) for each scenario."""
    cols = {sc: s[("time", "minutes")] for sc, s in summaries.items()}
    table = pd.DataFrame(cols).rename(index=LABELS).round(3)
    table.index.name = "method"
    return table
