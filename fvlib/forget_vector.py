"""ForgetVector: δ plus metadata, with task-vector-style arithmetic, safe files and `wrap`.

δ is a (3, H, W) float32 tensor in [0, 1] pixel space. The vector is what callers pass around:
`fv.wrap(theta_o)` is the unlearned system, an nn.Module that sees x + δ, so metrics, shifts, PGD
and Grad-CAM all take models. `perturb` is the one place where "x + δ, maybe clamp" is written.

Metadata that decides where a vector may be used is enforced, not just carried:
  * `model` (θ_o's fingerprint): `wrap` refuses another θ_o; a sum needs one θ_o.
  * `dataset` and δ's shape: `check_fits` refuses other data; a sum needs one dataset.
  * `clamp` (x + δ clipped to [0, 1] or not, the solve's choice): a sum needs one setting.
A sum (or a scaled vector) keeps every field that is known on either side; two known values that
differ are an error (a bare `ForgetVector(δ)` knows none, so it takes the other side's).
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
from torch import nn

from fvlib import __version__, models
from fvlib.cache import load_tensors, save_tensors

if TYPE_CHECKING:
    from fvlib.data import ImageData


class ForgetVectorError(ValueError):
    """Incompatible vectors or an unusable vector file."""


def perturb(x: torch.Tensor, delta: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    """x (..., 3, H, W) in [0, 1] plus δ (..., 3, H, W; leading dims broadcast), clipped to [0, 1]
    only when clamp. The image dims must agree: a smaller δ is never broadcast over the image."""
    if x.shape[-3:] != delta.shape[-3:]:
        raise ForgetVectorError(f"δ of image shape {tuple(delta.shape[-3:])} cannot perturb images of "
                                f"shape {tuple(x.shape[-3:])} (B, 3, H, W); use a vector solved for "
                                "this image size")
    out = x + delta.to(x.device, x.dtype)
    return out.clamp(0, 1) if clamp else out


def check_finite(delta: torch.Tensor, what: str = "δ") -> None:
    """Raise ForgetVectorError if a perturbation holds NaN or ±inf (it would score UA=RA=TA=0)."""
    if not torch.isfinite(delta).all():
        bad = int((~torch.isfinite(delta)).sum())
        raise ForgetVectorError(f"{what} has {bad} non-finite entries (NaN or inf); re-solve it with a "
                                "lower learning rate or check the file it came from.")


class ForgetVector:
    """A universal input perturbation δ (3, H, W) with metadata (dataset, model, forget set, config)."""

    def __init__(self, delta: torch.Tensor, meta: dict | None = None):
        if not isinstance(delta, torch.Tensor) or delta.dim() != 3 or delta.shape[0] != 3:
            shape = tuple(delta.shape) if isinstance(delta, torch.Tensor) else type(delta).__name__
            raise ForgetVectorError(f"δ must be a tensor of shape (3, H, W), got {shape}")
        check_finite(delta)
        self.delta = delta.detach().float()
        # image_shape always reflects the tensor, whatever the given metadata says
        self.meta = {"fvlib": __version__, **(meta or {}), "image_shape": list(delta.shape)}

    @property
    def clamp(self) -> bool:
        """Whether x + δ is clipped to [0, 1]: the solve config's choice, so use matches the solve."""
        if "clamp" in self.meta:
            return bool(self.meta["clamp"])
        return bool((self.meta.get("config") or {}).get("clamp", False))

    # ------------------------------------------------------------------ arithmetic
    def _check(self, other: object) -> "ForgetVector":
        if not isinstance(other, ForgetVector):
            raise ForgetVectorError(f"can only combine a ForgetVector with another ForgetVector, not "
                                    f"{type(other).__name__}; wrap a raw tensor as ForgetVector(δ) first.")
        if self.delta.shape != other.delta.shape:
            raise ForgetVectorError(f"cannot combine forget vectors of shapes {tuple(self.delta.shape)} "
                                    f"and {tuple(other.delta.shape)}: they belong to different image sizes")
        self._joined(other)
        return other

    def _joined(self, other: "ForgetVector") -> dict:
        """The metadata a sum keeps: each of dataset, θ_o and clamp known on either side (must agree)."""
        if self._bare() and other._bare():
            return {}
        out = {}
        for field, what in (("dataset", "datasets"), ("model", "θ_o (model fingerprints)"),
                            ("clamp", "clamp settings")):
            a = self.clamp if field == "clamp" else self.meta.get(field)
            b = other.clamp if field == "clamp" else other.meta.get(field)
            if field == "clamp" and (self._bare() or other._bare()):  # a bare vector has no setting
                a, b = (b, b) if self._bare() else (a, a)
            if a is not None and b is not None and a != b:
                raise ForgetVectorError(f"cannot combine vectors of different {what}: {a!r} and {b!r}; "
                                        "combine only vectors solved on the same data and θ_o, with the "
                                        "same clamp setting")
            out[field] = a if a is not None else b
        return out

    def _bare(self) -> bool:
        """True for a vector built from a raw tensor (it knows no data, θ_o or clamp setting)."""
        return not any(k in self.meta for k in ("dataset", "model", "config", "clamp"))

    def _derived(self, delta: torch.Tensor, terms: list, other: "ForgetVector | None" = None) -> "ForgetVector":
        if other is not None:
            meta = self._joined(other)
        else:
            meta = {} if self._bare() else {"dataset": self.meta.get("dataset"),
                                            "model": self.meta.get("model"), "clamp": self.clamp}
        if other is None or self.meta.get("config") == other.meta.get("config"):
            meta["config"] = self.meta.get("config")  # one solve config: still true of the sum
        return ForgetVector(delta, {k: v for k, v in meta.items() if v is not None} |
                            {"forget": {"combination": terms}})

    def _term(self, w: float = 1.0) -> list:
        comb = self.meta.get("forget", {}).get("combination")
        if comb is not None:
            return [[w * c, spec] for c, spec in comb]
        return [[w, self.meta.get("forget")]]

    def __add__(self, other: "ForgetVector") -> "ForgetVector":
        if isinstance(other, numbers.Number) and other == 0:  # so sum([...]) works
            return self
        self._check(other)
        return self._derived(self.delta + other.delta.to(self.delta.device), self._term() + other._term(), other)

    __radd__ = __add__

    def __neg__(self) -> "ForgetVector":
        return self * -1.0

    def __sub__(self, other: "ForgetVector") -> "ForgetVector":
        return self + (-self._check(other))

    def __mul__(self, w: float) -> "ForgetVector":
        if not isinstance(w, numbers.Number) or isinstance(w, bool):
            return NotImplemented
        return self._derived(self.delta * float(w), self._term(float(w)))

    __rmul__ = __mul__

    # ------------------------------------------------------------------ use
    def to(self, device) -> "ForgetVector":
        """Copy on another device."""
        return ForgetVector(self.delta.to(device), dict(self.meta))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1] -> x + δ (clipped when the vector's config says so)."""
        return perturb(x, self.delta, self.clamp)

    def wrap(self, model: nn.Module, fingerprint: str | None = None) -> "Perturbed":
        """The deployable unlearned system: model(x + δ), weights and BN statistics untouched.

        Refuses a model other than the θ_o the vector was solved on (one hash of its weights;
        pass `fingerprint` when the caller already holds models.fingerprint(model))."""
        solved_on = self.meta.get("model")
        if solved_on is not None:
            actual = fingerprint if fingerprint is not None else models.fingerprint(model)
            if actual != solved_on:
                raise ForgetVectorError(f"this vector was solved on θ_o {solved_on}, not on this model "
                                        f"({actual}); solve a vector for this model, or drop the check "
                                        "on purpose with ForgetVector(fv.delta)")
        return Perturbed(model, self)

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
    def load(cls, path: str | Path, data: "ImageData | None") -> "ForgetVector":
        """Read a file written by save() and check it fits `data` (shape, dataset); None skips the check."""
        tensors, meta = load_tensors(Path(path))
        if meta.get("kind") != "forget_vector" or "delta" not in tensors:
            raise ForgetVectorError(f"{path} is not a forget-vector file (no 'delta' tensor / kind).")
        try:
            fv = cls(tensors["delta"], {k: v for k, v in meta.items() if k != "kind"})
        except ForgetVectorError as err:
            raise ForgetVectorError(f"{path}: {err}") from err
        if data is not None:
            fv.check_fits(data, str(path))
        return fv

    def check_fits(self, data: "ImageData", where: str = "this vector") -> None:
        """Raise unless δ has data's image shape and was solved on the same dataset."""
        if tuple(self.delta.shape) != tuple(data.image_shape):
            raise ForgetVectorError(f"{where} holds a δ of shape {tuple(self.delta.shape)}, but {data.name} "
                                    f"needs {tuple(data.image_shape)}; solve a vector for this image size.")
        if self.meta.get("dataset") not in (None, data.name):
            raise ForgetVectorError(f"{where} was solved on {self.meta.get('dataset')}, not {data.name}.")


class Perturbed(nn.Module):
    """model(x + δ): a forget vector in front of a frozen model (the unlearned system).

    θ_o always runs in eval mode (BN uses its running statistics) and is never changed: the
    system's train()/eval() do not reach it, and a θ_o left in train mode is evaluated in eval mode.
    """

    def __init__(self, model: nn.Module, vector: ForgetVector):
        super().__init__()
        check_finite(vector.delta)
        self.model = model
        self.vector = vector
        self.register_buffer("delta", vector.delta)  # the vector's own tensor: one source of truth

    @property
    def clamp(self) -> bool:
        return self.vector.clamp

    def train(self, mode: bool = True) -> "Perturbed":
        self.training = mode  # θ_o keeps its own mode: the unlearned system never trains it
        return self

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """What the model sees: x (B, 3, H, W) + δ (clipped when clamp)."""
        return perturb(x, self.delta, self.clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with models.evaluating(self.model):
            return self.model(self.perturb(x))


def unwrap(system: nn.Module) -> nn.Module:
    """The weights-bearing model behind a system (θ_o for a wrapped forget vector)."""
    return system.model if isinstance(system, Perturbed) else system


def shown(system: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input a system's model really sees: x + δ for a forget vector, else x (B, 3, H, W)."""
    return system.perturb(x) if isinstance(system, Perturbed) else x


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
