"""Display names of methods, shifts and scenarios (tables and figures); code uses the keys."""
from __future__ import annotations

METHODS = {"original": "Origin", "retrain": "Retrain", "ft": "FT", "rl": "RL", "ga": "GA",
           "neggrad_plus": "NegGrad+", "salun": "SalUn", "scrub": "SCRUB", "fv": "FV (ours)",
           "fv_plus": "FV+ (dev-tuned)", "cu_fv": "CU-FV"}
SHIFTS = {"benign": "Benign", "gn1": "GN1", "gn2": "GN2", "et1": "ET1", "et2": "ET2", "pgd": "PGD"}
SCENARIOS = {"classwise": "class-wise forgetting", "random": "random forgetting"}


def method(key: str) -> str:
    """Display name of a method key (the key itself when it has none)."""
    return METHODS.get(key, key)


def method_key(label: str) -> str:
    """The method key of a display name (inverse of method())."""
    return {v: k for k, v in METHODS.items()}.get(label, label)
