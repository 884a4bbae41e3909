"""fvlib: forget vectors (universal input perturbations) for machine unlearning, reproduced."""
from __future__ import annotations

__version__ = "0.1.0"

from fvlib.runtime import seed_everything, pick_device  # noqa: E402

__all__ = ["__version__", "seed_everything", "pick_device"]
