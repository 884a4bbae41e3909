"""The unlearned system of (method, split): θ_o itself, θ_o behind a forget vector, or a baseline's
model — always an nn.Module, produced through the cache (models and vectors are never recomputed).

Methods: "original" (θ_o, no unlearning), "fv" (the forget vector: missing vectors of several
splits are solved in one batched pass), "fv_plus" (a forget vector of a config given by the caller:
the development-chosen variant of fvlib.selection), "cu_fv" (compositional: weights over the
class-wise vectors, P5) and every baseline of fvlib.baselines ("retrain", "ft", "rl", ...).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from torch import nn

from fvlib import baselines, models, solve, splits
from fvlib.cache import cache_dir, cached_tensors, config_hash, ensure_writable, tensors_path
from fvlib.forget_vector import ForgetVector, Perturbed
from fvlib.runtime import prepare_model, timer

if TYPE_CHECKING:
    from fvlib.config import Profile
    from fvlib.experiment import Experiment

VECTOR_METHODS = ("fv", "fv_plus", "cu_fv")
# Table 1's rows: every registered baseline in its order, then the forget vector.
METHOD_ORDER = (*baselines.names(), "fv")


def valid_methods() -> tuple[str, ...]:
    """Every method a study can build."""
    return ("original", *baselines.names(), *VECTOR_METHODS)


def check_methods(methods: Sequence[str]) -> list[str]:
    """The methods as a list; one clear error for a bare string or an unknown name."""
    if isinstance(methods, str):
        raise TypeError(f"methods must be a list of names, e.g. [{methods!r}], not the string {methods!r}")
    unknown = [m for m in methods if m not in valid_methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid_methods())}")
    return list(methods)


@dataclasses.dataclass
class System:
    """An unlearned system and what it cost: module maps [0, 1] pixels (B, 3, H, W) to logits."""
    module: nn.Module
    method: str
    seconds: float                      # time to produce it (a batched solve's share per vector)
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def vector(self) -> ForgetVector | None:
        """The forget vector behind the module, for the vector methods."""
        return self.module.vector if isinstance(self.module, Perturbed) else None


def method_config(profile: "Profile", method: str, scenario: str) -> Any:
    """The config that determines a method's result (part of every record's key): only its own."""
    if method == "original":
        return None
    if method == "fv":
        return profile.fv_for(scenario)
    if method == "fv_plus":
        raise ValueError("fv_plus has no config in the profile: pass the chosen FVConfig "
                         "(run_study(..., configs={'fv_plus': choice.config}))")
    if method == "cu_fv":  # class-wise basis vectors + the weights' optimisation
        return (profile.fv, profile.fv_random)
    return baselines.get(method).config_for(profile)


def _vector_paths(ex: "Experiment", kind: str, cfg: Any, split_list: Sequence[splits.Split]) -> list[Path]:
    """Where the vectors of kind ("fv", "cufv") for these splits live: cache_dir()/vectors."""
    return [cache_dir() / "vectors" / f"{kind}-{config_hash(kind, ex.identity, cfg, s.hash)}.safetensors"
            for s in split_list]


def _cached_vectors(ex: "Experiment", kind: str, cfg: Any, split_list: Sequence[splits.Split],
                    solve_missing: Callable[[list[splits.Split]], list[ForgetVector]]) -> list[ForgetVector]:
    """One vector per split from cache_dir()/vectors; the missing ones come from one solve_missing call."""
    paths = _vector_paths(ex, kind, cfg, split_list)
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    solved = {}
    if missing:
        ensure_writable(cache_dir() / "vectors")
        for i, fv in zip(missing, solve_missing([split_list[i] for i in missing])):
            fv.save(paths[i])
            solved[i] = fv  # just solved: used as it is, not read back from the file
    return [solved[i] if i in solved else ForgetVector.load(p, ex.data).to(ex.data.device)
            for i, p in enumerate(paths)]


def forget_vectors(ex: "Experiment", split_list: Sequence[splits.Split], cfg: solve.FVConfig | None = None,
                   progress: bool = False) -> list[ForgetVector]:
    """One forget vector per split through the cache; missing ones are solved in one batch."""
    cfg = cfg if cfg is not None else ex.profile.fv_for(split_list[0].scenario)
    return _cached_vectors(ex, "fv", cfg, split_list, lambda todo: solve.solve_many(
        ex.original, ex.data, todo, cfg, progress, fingerprint=ex.identity[1]))


def class_vectors(ex: "Experiment", progress: bool = False) -> list[ForgetVector]:
    """The class-wise forget vectors of every class (the basis of CU-FV and of Fig. 3)."""
    return forget_vectors(ex, [splits.classwise(ex.data, c) for c in range(ex.data.num_classes)],
                          ex.profile.fv, progress)


def composed_vectors(ex: "Experiment", split_list: Sequence[splits.Split],
                     progress: bool = False) -> list[ForgetVector]:
    """CU-FV (P5): weights over all class-wise vectors per split, cached like the vectors."""
    cfg = method_config(ex.profile, "cu_fv", split_list[0].scenario)

    def solve_missing(todo: list[splits.Split]) -> list[ForgetVector]:
        fv_cfg = ex.profile.fv_for(todo[0].scenario)
        return [fv for fv, _w in solve.compose(ex.original, ex.data, todo, class_vectors(ex, progress),
                                               fv_cfg, progress, fingerprint=ex.identity[1])]
    return _cached_vectors(ex, "cufv", cfg, split_list, solve_missing)


def _unlearned_key(ex: "Experiment", method: str, cfg: Any, split: splits.Split) -> str:
    """Cache key of a baseline's unlearned model (file unlearned-<method>-<key>.safetensors)."""
    return config_hash("unlearned", ex.identity, method, cfg, split.hash)


def unlearned_model(ex: "Experiment", method: str, split: splits.Split) -> System:
    """A baseline's unlearned model through the cache (the seconds are those of the first run).

    A method that caches its own model (Retrain: the θ_o cache, keyed by the retain mask) is
    not cached a second time."""
    baseline = baselines.get(method)
    cfg = baseline.config_for(ex.profile)
    if baseline.cached is not None:  # e.g. Retrain: the θ_o cache, keyed by the retain mask
        split.check(ex.data)
        model, info = baseline.cached(ex.original, ex.data, split, cfg)
        return System(model, method, info["seconds"], info={"cache_hit": info["cache_hit"]})
    key = _unlearned_key(ex, method, cfg, split)

    def compute():
        with timer(ex.data.device) as t:
            new = baselines.run(method, ex.original, ex.data, split, cfg)
        return dict(new.state_dict()), {"seconds": t["seconds"], "method": method}
    state, meta, hit = cached_tensors(f"unlearned-{method}", key, compute)
    model = models.build(ex.profile.model, ex.data.num_classes, ex.data.spec.mean, ex.data.spec.std)
    model.load_state_dict(state)
    return System(prepare_model(model, ex.data.device).eval(), method, meta["seconds"],
                  info={"cache_hit": hit})


def build(ex: "Experiment", method: str, split_list: Sequence[splits.Split],
          cfg: solve.FVConfig | None = None, progress: bool = False) -> list[System]:
    """The system of `method` for each split (cfg overrides the profile's forget-vector config)."""
    if not split_list:
        return []
    if method == "original":
        return [System(ex.original, method, 0.0) for _ in split_list]
    if method in VECTOR_METHODS:
        if method == "fv_plus" and cfg is None:
            method_config(ex.profile, method, split_list[0].scenario)  # raises: says what to pass
        vecs = (composed_vectors(ex, split_list, progress) if method == "cu_fv"
                else forget_vectors(ex, split_list, cfg, progress))
        return [System(v.wrap(ex.original, ex.identity[1]), method, float(v.meta.get("seconds", 0.0)),
                       {k: v.meta[k] for k in ("solve_seconds", "solved_together", "weights") if k in v.meta})
                for v in vecs]
    return [unlearned_model(ex, method, s) for s in split_list]


def artifacts(ex: "Experiment", method: str, split_list: Sequence[splits.Split],
              cfg: solve.FVConfig | None = None) -> list[Path]:
    """The cache files `build(ex, method, split_list, cfg)` reads, and writes where missing: what the
    systems are made of (vectors, unlearned models, Retrain's models), so that an executor building
    them elsewhere can ship them there and back. CU-FV adds the class-wise basis while it needs it."""
    if method == "original" or not split_list:
        return []
    if method in ("fv", "fv_plus"):
        return _vector_paths(ex, "fv", cfg if cfg is not None else ex.profile.fv_for(split_list[0].scenario),
                             split_list)
    if method == "cu_fv":
        own = _vector_paths(ex, "cufv", method_config(ex.profile, method, split_list[0].scenario), split_list)
        if all(p.exists() for p in own):
            return own
        basis = [splits.classwise(ex.data, c) for c in range(ex.data.num_classes)]
        return own + _vector_paths(ex, "fv", ex.profile.fv, basis)
    baseline = baselines.get(method)
    bcfg = baseline.config_for(ex.profile)
    if baseline.cached_file is not None:
        return [baseline.cached_file(ex.data, s, bcfg) for s in split_list]
    if baseline.cached is not None:
        raise ValueError(f"baseline {method!r} caches its own model but registers no cached_file: "
                         "register one, so that executors can ship its models")
    return [tensors_path(f"unlearned-{method}", _unlearned_key(ex, method, bcfg, s)) for s in split_list]
