"""Display names of methods, shifts and scenarios (tables and figures); code uses the keys.

Each baseline adds its own label when it registers (fvlib.baselines); the names here are those of
θ_o and the forget-vector methods."""
from __future__ import annotations

METHODS = {"original": "Origin", "fv": "FV (ours)", "fv_plus": "FV+ (dev-tuned)", "cu_fv": "CU-FV"}
SHIFTS = {"benign": "Benign", "gn1": "GN1", "gn2": "GN2", "et1": "ET1", "et2": "ET2", "pgd": "PGD"}
SCENARIOS = {"classwise": "class-wise forgetting", "random": "random forgetting"}


def method(key: str) -> str:
    """Display name of a method key (the key itself when it has none)."""
    return METHODS.get(key, key)
