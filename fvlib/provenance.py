"""Where a result came from: config, code version, git state, device, library versions."""
from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fvlib import __version__
from fvlib.paths import ROOT


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit sha (with '-dirty' for uncommitted changes; 'unknown' outside git) when this process
    first asked: asked once, not in two subprocesses per record."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, paths, tensors, numpy arrays, DataFrames -> plain JSON values (NaN -> None)."""
    if isinstance(obj, float) and obj != obj:  # NaN -> null (strict JSON; pandas reads it back)
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, pd.DataFrame):  # records of the flattened frame (index kept as columns)
        flat = obj.copy()
        if isinstance(flat.columns, pd.MultiIndex):
            flat.columns = [" ".join(map(str, c)).strip() for c in flat.columns]
        return to_jsonable(flat.reset_index().to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_jsonable(obj.item())
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def provenance(device: torch.device | None = None, **extra: Any) -> dict:
    """A provenance record: fvlib version, git sha, torch/cuda/python versions, device, plus extra
    (an experiment adds its profile, data and θ_o; a figure its settings and seconds)."""
    from fvlib.runtime import device_name
    rec = {
        "fvlib": __version__, "git_sha": git_sha(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "device": device_name(device) if device is not None else None,
    }
    rec.update(to_jsonable(extra))
    return rec
