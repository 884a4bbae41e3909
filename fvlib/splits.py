"""Forget / retain / test splits as boolean masks (reference notes §2), with exportable manifests.

Trial i means: class-wise -> forget class i; random -> forget-set seed i. Every method of a trial
uses the same masks, identified by their hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np
import torch

from fvlib.data import ImageData

SCENARIOS = ("classwise", "random")


@dataclasses.dataclass(frozen=True)
class Split:
    """Masks over the train set (forget, retain) and test set (TA set, unseen forget set)."""
    scenario: str            # "classwise" | "random" | "classes" (a union of classes)
    trial: int               # class index (class-wise) or seed (random)
    forget: torch.Tensor     # (N_train,) bool: D_f
    test_eval: torch.Tensor  # (N_test,) bool: TA set (test minus forgotten classes / whole test)
    test_forget: torch.Tensor  # (N_test,) bool: test images of the forgotten classes (Table 2)
    classes: tuple[int, ...] = ()

    @property
    def retain(self) -> torch.Tensor:
        """(N_train,) bool: D_r, the complement of D_f."""
        return ~self.forget

    @property
    def hash(self) -> str:
        """sha256 (16 hex) of the forget and TA index sets: the split's identity."""
        h = hashlib.sha256()
        for m in (self.forget, self.test_eval):
            h.update(np.asarray(m.nonzero().flatten().cpu(), dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.scenario}-{self.trial}"

    def manifest(self) -> dict:
        """Indices and hash, so anyone outside fvlib can rebuild exactly these sets."""
        idx = lambda m: m.nonzero().flatten().cpu().tolist()  # noqa: E731
        return {"scenario": self.scenario, "trial": self.trial, "classes": list(self.classes),
                "hash": self.hash, "forget": idx(self.forget), "test_eval": idx(self.test_eval),
                "test_forget": idx(self.test_forget)}


def classwise(data: ImageData, k: int) -> Split:
    """D_f = every training image of class k; TA set = test images not of class k (§2.1)."""
    return forget_classes(data, [k], scenario="classwise", trial=k)


def forget_classes(data: ImageData, classes: Sequence[int], scenario: str = "classes",
                   trial: int = 0) -> Split:
    """D_f = every training image of the given classes (multi-class / compositional forgetting)."""
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range; {data.name} has classes 0..{data.num_classes - 1}")
    cls = torch.tensor(list(classes), device=data.device)
    in_train = torch.isin(data.train_y, cls)
    in_test = torch.isin(data.test_y, cls)
    return Split(scenario, trial, in_train, ~in_test, in_test, tuple(int(c) for c in classes))


def random(data: ImageData, seed: int, percent: float = 10.0) -> Split:
    """D_f = percent % of the training set drawn without replacement with RandomState(seed) (§2.2)."""
    if not 0 < percent < 100:
        raise ValueError(f"percent must be in (0, 100), got {percent}")
    n = len(data.train_y)
    idx = np.random.RandomState(seed).choice(n, size=int(n * percent / 100), replace=False)
    forget = torch.zeros(n, dtype=torch.bool)
    forget[torch.from_numpy(idx)] = True
    n_test = len(data.test_y)
    test_all = torch.ones(n_test, dtype=torch.bool, device=data.device)
    return Split("random", seed, forget.to(data.device), test_all, ~test_all)


def for_trial(data: ImageData, scenario: str, trial: int, percent: float = 10.0) -> Split:
    """The split of trial i: class i (class-wise) or seed i (random)."""
    if scenario == "classwise":
        return classwise(data, trial)
    if scenario == "random":
        return random(data, trial, percent)
    raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
