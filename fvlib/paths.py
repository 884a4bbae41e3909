"""Every on-disk location of the project, resolved from the repo root (never from the cwd)."""
from __future__ import annotations

import os
from pathlib import Path

# FVLIB_ROOT lets an installed copy or a test point the whole project somewhere else.
ROOT = Path(os.environ.get("FVLIB_ROOT", Path(__file__).resolve().parent.parent))


def data_dir() -> Path:
    """Folder for user data and offline archives (git-ignored)."""
    return Path(os.environ.get("FVLIB_DATA", ROOT / "data"))


def cache_dir() -> Path:
    """Folder for decoded arrays, trained models, vectors and result records."""
    path = Path(os.environ.get("FVLIB_CACHE", data_dir() / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(profile: str) -> Path:
    """Folder for one profile's figures and tables: figures/<profile>/."""
    path = Path(os.environ.get("FVLIB_FIGURES", ROOT / "figures")) / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path:
    """The offline archives shipped beside the project (../shared/data), read in place."""
    return ROOT.parent / "shared" / "data"
