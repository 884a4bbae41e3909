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
    """The error for an unusable folder, saying how to fix it (env: the variable that moves it)."""
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


def _probe(folder: Path, env: str | None) -> None:
    """Prove a file can be written in folder (a real write: ACLs, read-only mounts, root-squashed NFS)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fvlib-write-test-"):
            pass
    except OSError as err:
        raise _not_writable(folder, err, env) from err


def _subfolders(folder: Path, depth: int) -> list[Path]:
    """Existing folders below folder, down to depth levels (links not followed)."""
    if depth < 1:
        return []
    try:
        subs = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []  # an unlistable folder fails its own probe
    return [q for p in sorted(subs) for q in (p, *_subfolders(p, depth - 1))]


def not_writable_error(folder: Path, err: OSError) -> NotWritableError:
    """NotWritableError for folder, naming FVLIB_CACHE / FVLIB_FIGURES when they move it."""
    return _not_writable(Path(folder), err, _env_for(Path(folder)))


def ensure_writable(folder: Path, env: str | None = None, depth: int = 2) -> Path:
    """Create folder and prove a file can be written there and in its existing subfolders down to
    depth levels (the cache's records/<kind>/, vectors/, manifests/); raise NotWritableError if not.

    Callers check before a long compute, so a read-only subfolder fails here and not at the write.
    """
    env = env or _env_for(Path(folder))
    folder = _make(Path(folder), env)
    for sub in (folder, *_subfolders(folder, depth)):
        _probe(sub, env)
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
