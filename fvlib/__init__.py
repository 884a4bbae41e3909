"""fvlib: forget vectors (universal input perturbations) for machine unlearning, reproduced."""
from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__", "seed_everything", "pick_device", "setup", "notebook"]


def __getattr__(name: str):
    """Lazy top-level helpers, so worker processes that import fvlib.mia never load torch."""
    if name in ("seed_everything", "pick_device"):
        from fvlib import runtime
        return getattr(runtime, name)
    if name in ("setup", "notebook"):
        from fvlib import experiment
        return getattr(experiment, name)
    raise AttributeError(f"module 'fvlib' has no attribute {name!r}")
