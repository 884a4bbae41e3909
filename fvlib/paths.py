"""Every on-disk location of the project, resolved from the repo root (never from the cwd)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# FVLIB_ROOT lets an installed copy or a test point the whole project somewhere else.
ROOT = Path(os.environ.get("FVLIB_ROOT", Path(__file__).resolve().parent.parent))


class NotWritableError(OSError):
    """A folder fvlib must write to cannot be created or written."""


def _not_writable(folder: Path, err: OSError, env: str | None) -> NotWritableError:
    """The error for an unusable folder, saying how to fix it."""
    where = f"set {env} to a writable folder" if env else "choose a writable folder"
    return NotWritableError(f"cannot write to {folder} ({type(err).__name__}: {err.strerror or err}); "
                            f"fix its permissions/ownership or {where}")


def _make(folder: Path, env: str | None = None) -> Path:
    """mkdir -p folder, with a clear error (naming env, the variable that moves it) on failure."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _not_writable(folder, err, env) from err
    return folder


def _env_for(folder: Path) -> str | None:
    """The environment variable that relocates folder, if it is (inside) the cache or figures."""
    folder = folder.absolute()
    for env, base in (("FVLIB_CACHE", _cache_path()), ("FVLIB_FIGURES", _figures_root())):
        if folder == base.absolute() or base.absolute() in folder.parents:
            return env
    return None


def ensure_writable(folder: Path, env: str | None = None) -> Path:
    """Create folder and prove a file can be written there; raise NotWritableError if not."""
    env = env or _env_for(Path(folder))
    folder = _make(Path(folder), env)
    # A real write is the only reliable test (ACLs, read-only mounts, root-squashed NFS).
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fvlib-write-test-"):
            pass
    except OSError as err:
        raise _not_writable(folder, err, env) from err
    return folder


def data_dir() -> Path:
    """Folder for user data and offline archives (git-ignored)."""
    return Path(os.environ.get("FVLIB_DATA", ROOT / "data"))


def _cache_path() -> Path:
    """Where the cache lives (not created)."""
    return Path(os.environ.get("FVLIB_CACHE", data_dir() / "cache"))


def _figures_root() -> Path:
    """Where figures/ lives (not created)."""
    return Path(os.environ.get("FVLIB_FIGURES", ROOT / "figures"))


def cache_dir() -> Path:
    """Folder for decoded arrays, trained models, vectors and result records (created, maybe read-only)."""
    return _make(_cache_path(), "FVLIB_CACHE")


def figures_dir(profile: str) -> Path:
    """Folder for one profile's figures and tables: figures/<profile>/."""
    return _make(_figures_root() / profile, "FVLIB_FIGURES")


def resolve_data_root(value: str | os.PathLike | None) -> str | None:
    """A data root as given by a user (None or "" = search the defaults): '~' expanded, made
    absolute against the caller's current folder (not the notebooks'), and required to exist."""
    if value is None or str(value) == "":
        return None
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"data root {str(value)!r} does not exist (looked for {path}); pass an "
                                "archive or a folder with train/ and test/, or \"\" for the defaults")
    return str(path)


def shared_data_dir() -> Path:
    """The offline archives shipped beside the project (../shared/data), read in place."""
    return ROOT.parent / "shared" / "data"
