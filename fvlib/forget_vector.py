"""ForgetVector: δ plus metadata, with task-vector-style arithmetic and safe files.

δ is a (3, H, W) float32 tensor in [0, 1] pixel space, added to every input of the frozen model.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from fvlib import __version__
from fvlib.cache import load_tensors, save_tensors


class ForgetVectorError(ValueError):
    """Incompatible vectors or an unusable vector file."""


class ForgetVector:
    """A universal input perturbation δ (3, H, W) with metadata (dataset, shape, model, forget set)."""

    def __init__(self, delta: torch.Tensor, meta: dict | None = None):
        if delta.dim() != 3 or delta.shape[0] != 3:
            raise ForgetVectorError(f"δ must have shape (3, H, W), got {tuple(delta.shape)}")
        self.delta = delta.detach().float()
        # image_shape always reflects the tensor, whatever the given metadata says
        self.meta = {"fvlib": __version__, **(meta or {}), "image_shape": list(delta.shape)}

    # ------------------------------------------------------------------ arithmetic
    def _check(self, other: "ForgetVector") -> None:
        if self.delta.shape != other.delta.shape:
            raise ForgetVectorError(f"cannot combine forget vectors of shapes {tuple(self.delta.shape)} "
                                    f"and {tuple(other.delta.shape)}: they belong to different image sizes")
        a, b = self.meta.get("dataset"), other.meta.get("dataset")
        if a and b and a != b:
            raise ForgetVectorError(f"cannot combine a {a} vector with a {b} vector")

    def _derived(self, delta: torch.Tensor, terms: list) -> "ForgetVector":
        keep = {k: self.meta[k] for k in ("dataset", "model") if k in self.meta}
        return ForgetVector(delta, {**keep, "forget": {"combination": terms}})

    def _term(self, w: float = 1.0) -> list:
        comb = self.meta.get("forget", {}).get("combination")
        if comb is not None:
            return [[w * c, spec] for c, spec in comb]
        return [[w, self.meta.get("forget")]]

    def __add__(self, other: "ForgetVector") -> "ForgetVector":
        if isinstance(other, numbers.Number) and other == 0:  # so sum([...]) works
            return self
        self._check(other)
        return self._derived(self.delta + other.delta.to(self.delta.device), self._term() + other._term())

    __radd__ = __add__

    def __neg__(self) -> "ForgetVector":
        return self * -1.0

    def __sub__(self, other: "ForgetVector") -> "ForgetVector":
        return self + (-other)

    def __mul__(self, w: float) -> "ForgetVector":
        if not isinstance(w, numbers.Number):
            return NotImplemented
        return self._derived(self.delta * float(w), self._term(float(w)))

    __rmul__ = __mul__

    # ------------------------------------------------------------------ use
    def to(self, device) -> "ForgetVector":
        """Copy on another device."""
        return ForgetVector(self.delta.to(device), dict(self.meta))

    def apply(self, x: torch.Tensor, clamp: bool = False) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1] -> x + δ (clipped to [0, 1] only if clamp)."""
        out = x + self.delta.to(x.device, x.dtype)
        return out.clamp(0, 1) if clamp else out

    def wrap(self, model: nn.Module, clamp: bool = False) -> nn.Module:
        """The deployable unlearned model: adds δ before the frozen model (weights untouched)."""
        return Perturbed(model, self.delta, clamp)

    @property
    def norm(self) -> float:
        """‖δ‖₂."""
        return self.delta.norm().item()

    def __repr__(self) -> str:
        forget = self.meta.get("forget")
        return f"ForgetVector(shape={tuple(self.delta.shape)}, ‖δ‖₂={self.norm:.3f}, forget={forget})"

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (tensor + JSON metadata), atomically; never pickle."""
        save_tensors(Path(path), {"delta": self.delta}, {"kind": "forget_vector", **self.meta})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, image_shape: Sequence[int] | None = None,
             dataset: str | None = None) -> "ForgetVector":
        """Read a file written by save(); check shape/dataset when given; clear error otherwise."""
        tensors, meta = load_tensors(Path(path))
        if meta.get("kind") != "forget_vector" or "delta" not in tensors:
            raise ForgetVectorError(f"{path} is not a forget-vector file (no 'delta' tensor / kind).")
        fv = cls(tensors["delta"], {k: v for k, v in meta.items() if k != "kind"})
        if image_shape is not None and tuple(fv.delta.shape) != tuple(image_shape):
            raise ForgetVectorError(f"{path} holds a δ of shape {tuple(fv.delta.shape)}, but this data "
                                    f"needs {tuple(image_shape)}; solve a vector for this image size.")
        if dataset is not None and meta.get("dataset") not in (None, dataset):
            raise ForgetVectorError(f"{path} was solved on {meta.get('dataset')}, not {dataset}.")
        return fv


class Perturbed(nn.Module):
    """model(x + δ): a forget vector in front of a frozen model."""

    def __init__(self, model: nn.Module, delta: torch.Tensor, clamp: bool = False):
        super().__init__()
        self.model = model
        self.register_buffer("delta", delta.detach().clone())
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.delta.to(x.dtype)
        return self.model(x.clamp(0, 1) if self.clamp else x)


def combine(vectors: Iterable[ForgetVector], weights: Iterable[float]) -> ForgetVector:
    """Σ_k w_k δ_k (paper Eq. 5) as a new ForgetVector."""
    vectors, weights = list(vectors), list(weights)
    if len(vectors) != len(weights) or not vectors:
        raise ForgetVectorError(f"need one weight per vector, got {len(vectors)} vectors and "
                                f"{len(weights)} weights")
    return sum(w * v for v, w in zip(vectors, weights))


def stack(vectors: Sequence[ForgetVector]) -> torch.Tensor:
    """(K, 3, H, W) tensor of the vectors' δ (shapes must agree)."""
    for v in vectors[1:]:
        vectors[0]._check(v)
    return torch.stack([v.delta for v in vectors])
