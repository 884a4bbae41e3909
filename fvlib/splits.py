"""Forget / retain / test splits as boolean masks (docs/protocol.md P2), with exportable manifests.

Trial i means: class-wise -> forget class i; random -> forget-set seed i. Every method of a trial
uses the same masks, identified by their hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np
import torch

from fvlib.data import IMAGE_SUFFIXES, ImageData

SCENARIOS = ("classwise", "random")


class SplitError(ValueError):
    """A split that does not fit the data it is used with, or an empty forget set."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Masks over the train set (forget, retain) and test set (TA set, unseen forget set)."""
    scenario: str            # "classwise" | "random" | "classes" (a union) | "instances" (files)
    trial: int               # class index (class-wise) or seed (random)
    forget: torch.Tensor     # (N_train,) bool: D_f
    test_eval: torch.Tensor  # (N_test,) bool: TA set (test minus forgotten classes / whole test)
    test_forget: torch.Tensor  # (N_test,) bool: test images of the forgotten classes (Table 2)
    classes: tuple[int, ...] = ()
    data: str = ""           # fingerprint of the ImageData the masks were built for ("" = unchecked)

    def check(self, data: ImageData) -> "Split":
        """Raise SplitError unless these masks were built for `data` (same images, same device)."""
        if self.data and self.data != data.fingerprint:
            raise SplitError(f"split {self.name} was built for other data ({self.data}), not {data.name} "
                             f"({data.fingerprint}); rebuild it with splits.for_trial(data, ...) after any "
                             f"data.subset() or reload.")
        n_tr, n_te = len(data.train_y), len(data.test_y)
        if self.forget.shape != (n_tr,) or self.test_eval.shape != (n_te,):
            raise SplitError(f"split {self.name} has masks of sizes {tuple(self.forget.shape)} / "
                             f"{tuple(self.test_eval.shape)} but {data.name} has {n_tr} train / {n_te} test "
                             "images; rebuild the split for this data.")
        if not bool(self.forget.any()):
            raise SplitError(f"split {self.name} forgets no training image (is the class present in "
                             f"{data.name}?); choose a forget set with at least one image.")
        if self.forget.device != data.device:
            raise SplitError(f"split {self.name} lives on {self.forget.device}, the data on {data.device}; "
                             "build the split after moving the data.")
        return self

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


def _need_data(data: object) -> ImageData:
    """data itself, or a TypeError saying that an ImageData is expected (not a shape or a tensor)."""
    if not isinstance(data, ImageData):
        raise TypeError(f"splits are built from an ImageData (e.g. ex.data or data.load('digits')), got "
                        f"{type(data).__name__} {data!r:.60}")
    return data


def class_index(data: ImageData, c: object) -> int:
    """A class as its index: an int (numpy ints too) as is, or a class name of data.classes."""
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        return int(c)
    if isinstance(c, str) and c in data.classes:
        return data.classes.index(c)
    names = ", ".join(repr(n) for n in data.classes)
    raise TypeError(f"a class is a class index (int) or name of {data.name}, got {type(c).__name__} {c!r}; "
                    f"classes: {names}")


def classwise(data: ImageData, k: int | str) -> Split:
    """D_f = every training image of class k (an index, or a name of data.classes); TA set = test
    images not of class k (P2.1)."""
    k = class_index(_need_data(data), k)
    return forget_classes(data, [k], scenario="classwise", trial=k)


def forget_classes(data: ImageData, classes: Sequence[int | str], scenario: str = "classes",
                   trial: int = 0) -> Split:
    """D_f = every training image of the given classes (indices or names; multi-class forgetting)."""
    classes = [class_index(_need_data(data), c) for c in classes]
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise SplitError(f"classes {bad} out of range; {data.name} has classes 0..{data.num_classes - 1}")
    cls = torch.tensor(list(classes), device=data.device)
    in_train = torch.isin(data.train_y, cls)
    in_test = torch.isin(data.test_y, cls)
    return Split(scenario, trial, in_train, ~in_test, in_test, tuple(int(c) for c in classes),
                 data.fingerprint)


def random(data: ImageData, seed: int, percent: float = 10.0) -> Split:
    """D_f = percent % of the training set drawn without replacement with RandomState(seed) (P2.2)."""
    _need_data(data)
    if not 0 < percent < 100:
        raise SplitError(f"percent must be in (0, 100), got {percent}")
    n = len(data.train_y)
    size = int(n * percent / 100)
    if size < 1:
        raise SplitError(f"{percent} % of {n} training images is 0 images; use percent >= {100 / n:.3g}.")
    idx = np.random.RandomState(seed).choice(n, size=size, replace=False)
    forget = torch.zeros(n, dtype=torch.bool)
    forget[torch.from_numpy(idx)] = True
    n_test = len(data.test_y)
    test_all = torch.ones(n_test, dtype=torch.bool, device=data.device)
    return Split("random", seed, forget.to(data.device), test_all, ~test_all, (), data.fingerprint)


def for_trial(data: ImageData, scenario: str, trial: int, percent: float = 10.0) -> Split:
    """The split of trial i: class i (class-wise) or seed i (random)."""
    if scenario == "classwise":
        return classwise(data, trial)
    if scenario == "random":
        return random(data, trial, percent)
    raise SplitError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")


def instances(data: ImageData, indices: Sequence[int], trial: int = 0) -> Split:
    """D_f = the given training images (instance-wise forgetting); TA set = the whole test set."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    n = len(data.train_y)
    if len(idx) == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
        raise SplitError(f"instance indices must be a non-empty subset of 0..{n - 1} (the training images)")
    forget = torch.zeros(n, dtype=torch.bool)
    forget[idx] = True
    test_all = torch.ones(len(data.test_y), dtype=torch.bool, device=data.device)
    return Split("instances", trial, forget.to(data.device), test_all, ~test_all, (), data.fingerprint)


def forget_set(data: ImageData, request: str | Sequence[str]) -> Split:
    """The forget set a person names: one class name, several class names (their union), or
    training files (paths below the folder, e.g. train/cat/0001.jpg: instance-wise forgetting)."""
    items = [request] if isinstance(request, str) else [str(r) for r in request]
    if not items:
        raise SplitError("the forget set is empty: name a class (e.g. 'cat') or training files")
    files = [i for i in items if i not in data.classes and ("/" in i or i.lower().endswith(IMAGE_SUFFIXES))]
    names = [i for i in items if i not in files]
    if files and names:
        raise SplitError(f"the forget set mixes class names {names} and files {files[:2]}...; forget "
                         "either classes or files (a class's files are all of them: name the class)")
    if files:
        return instances(data, file_indices(data, files))
    unknown = [c for c in names if c not in data.classes]
    if unknown:
        raise SplitError(f"forget class {unknown[0]!r} is not in {data.name}; its classes are: "
                         f"{', '.join(data.classes)} (class names are the folder names under train/)")
    ids = [data.classes.index(c) for c in dict.fromkeys(names)]
    return classwise(data, ids[0]) if len(ids) == 1 else forget_classes(data, ids)


def _file_keys(path: str) -> list[str]:
    """Candidate keys of a path: the part from each 'train' folder on (train/<class>/.../file)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return ["/".join(parts[i:]) for i, p in enumerate(parts[:-2]) if p == "train"]


def file_indices(data: ImageData, files: Sequence[str]) -> list[int]:
    """Training-set indices of files given as paths ending in train/<class>/<file> (any prefix)."""
    if data.train_files is None or len(data.train_files) != len(data.train_y):
        raise SplitError(f"{data.name} does not know its training file names (load it with "
                         "data.load_folder) so files cannot name a forget set; name classes instead")
    index = {key: i for i, f in enumerate(data.train_files) for key in _file_keys(f)[:1]}
    out = []
    for f in files:
        hit = next((index[k] for k in _file_keys(f) if k in index), None)
        if hit is None:
            example = data.train_files[0].split("train/", 1)[-1]
            raise SplitError(f"forget file {f!r} is not in the training set of {data.name} "
                             f"({len(data.train_files)} images under train/<class>/); give training "
                             f"files as paths ending in train/<class>/<name>, e.g. train/{example}")
        out.append(hit)
    return sorted(set(out))
