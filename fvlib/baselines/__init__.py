"""Baseline unlearning methods (docs/protocol.md P3.4, P7, D7), one module per method.

Every module in this package registers one method: its name, display label, row in Table 1, config
dataclass (defaults = the protocol's values, each field with its source) and a function
`(model, data, split, cfg) -> nn.Module` that returns a NEW model (θ_o is never modified). The
package imports its modules itself, so a new baseline is one new module here (plus its test): the
study's method order, the labels and the record keys all come from its registration. Each method
owns its hyperparameters, so changing one method's config recomputes only that method.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from fvlib import labels

if TYPE_CHECKING:
    from fvlib.config import Profile
    from fvlib.data import ImageData
    from fvlib.splits import Split

Run = Callable[[nn.Module, "ImageData", "Split", Any], nn.Module]


@dataclasses.dataclass(frozen=True)
class Baseline:
    """One registered method: name, display label, Table 1 row, config type, run function."""
    name: str
    label: str
    rank: int                                   # Table 1 row order (Retrain first)
    config: type                                # its frozen config dataclass
    run: Run
    default: Callable[["Profile"], Any] | None = None  # profile -> config (None: config())
    cached: Callable[..., tuple[nn.Module, dict]] | None = None  # like run, but through the method's
    #   own cache, returning (model, {"seconds": time to train it, "cache_hit": bool}) (Retrain)
    cached_file: Callable[["ImageData", "Split", Any], Path] | None = None  # (data, split, cfg) -> the
    #   file that `cached` keeps the model in (an executor ships it to and from where it is built)

    def config_for(self, profile: "Profile") -> Any:
        """The method's config in a profile: the profile's override, else the default."""
        override = profile.baselines.get(self.name)
        if override is not None:
            if not isinstance(override, self.config):
                raise TypeError(f"profile {profile.name!r} sets baselines[{self.name!r}] to a "
                                f"{type(override).__name__}; it must be a {self.config.__name__}")
            return override
        return self.default(profile) if self.default is not None else self.config()


REGISTRY: dict[str, Baseline] = {}


def register(name: str, label: str, rank: int, config: type, run: Run, **kw: Any) -> Baseline:
    """Add a method to the registry (called once by each module of this package)."""
    if name in REGISTRY:
        raise ValueError(f"baseline {name!r} is registered twice")
    REGISTRY[name] = Baseline(name, label, rank, config, run, **kw)
    labels.METHODS[name] = label
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered methods in Table 1 order."""
    return tuple(sorted(REGISTRY, key=lambda n: REGISTRY[n].rank))


def get(name: str) -> Baseline:
    """A method by name; an unknown name lists the valid ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown unlearning method {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[name]


def run(name: str, model: nn.Module, data: "ImageData", split: "Split", cfg: Any = None) -> nn.Module:
    """Apply method `name` (cfg: its config, None = its defaults) to θ_o; a new model in eval mode."""
    method = get(name)
    cfg = method.config() if cfg is None else cfg
    if not isinstance(cfg, method.config):
        raise TypeError(f"{name} takes a {method.config.__name__}, not a {type(cfg).__name__}")
    split.check(data)
    return method.run(model, data, split, cfg)


for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "loop":
        importlib.import_module(f"{__name__}.{_mod.name}")
