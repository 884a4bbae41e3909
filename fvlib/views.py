"""Shifted views of the data (docs/protocol.md P8): the images every set is scored on under a data
shift — Gaussian noise, an elastic transform or a PGD attack — as (data, split) pairs that slot in
wherever data does. Shared by the shift study (Fig. 2 / A1), Table 2 and the white-box attack.

Corruptions come from the cache (rendered once on the whole set, then indexed). PGD attacks only
the requested rows, white-box on the system evaluated (so it sees δ) unless cfg.attack_original,
quantised to uint8 like the paper's saved image folders; its cost is capped per set and system.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from fvlib import labels, splits
from fvlib import shifts as shiftlib
from fvlib.data import ImageData
from fvlib.runtime import generator
from fvlib.shifts import ShiftConfig

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

SHIFT_ORDER = tuple(labels.SHIFTS)  # benign, gn1, gn2, et1, et2, pgd


@dataclasses.dataclass(frozen=True)
class ShiftSizes:
    """How much the shifted studies attack (Profile.studies["shifts"])."""
    pgd_max_eval: int | None = 2000   # PGD: images attacked per set and system (None: all; P8.3 cost cap)


def shifted_view(name: str, data: ImageData, seed: int = 0, cfg: ShiftConfig = ShiftConfig(),
                 system: nn.Module | None = None, original: nn.Module | None = None,
                 train_idx: torch.Tensor | None = None,
                 test_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted (train, test) uint8 images (n, H, W, 3): every row, or only train_idx / test_idx."""
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
    0 the profile's (ShiftSizes.pgd_max_eval)."""
    if max_eval:
        return None if max_eval < 0 else max_eval
    return ex.profile.sizes("shifts", ShiftSizes).pgd_max_eval


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
