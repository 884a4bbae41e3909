"""Content-addressed on-disk cache with atomic writes: models, vectors, arrays and records."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from fvlib import __version__
from fvlib.paths import NotWritableError, cache_dir, ensure_writable, not_writable_error  # noqa: F401
from fvlib.provenance import to_jsonable


def config_hash(*parts: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of parts plus the fvlib version (stable across runs)."""
    blob = json.dumps([to_jsonable(p) for p in parts] + [__version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# A killed write leaves its temp file. Every fvlib writer writes its temp in one go and renames it
# at once, so a temp untouched for this long has no live writer and is removed (see _sweep).
STALE_TEMP_SECONDS = 15 * 60
_TEMP = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$|^\.fvlib-write-test-")
_swept: set[Path] = set()


class DiskFullError(OSError):
    """No space left (or quota exhausted) where fvlib writes; names the file and the fix."""


def _new_temp(folder: Path, name: str) -> tuple[Path, int]:
    """Create an empty temp file in folder -> (path, its mode: 0666 & ~umask, unlike mkstemp's 0600)."""
    tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp, stat.S_IMODE(tmp.stat().st_mode)


def _sweep(folder: Path) -> None:
    """Remove stale temp files of killed writes in folder: fvlib's own names only (.<name>.<16 hex>.tmp,
    .fvlib-write-test-*), untouched for STALE_TEMP_SECONDS; once per folder and process."""
    if folder in _swept:
        return
    _swept.add(folder)
    cutoff = time.time() - STALE_TEMP_SECONDS
    try:
        entries = list(os.scandir(folder))
    except OSError:  # unlistable (write-only) folder: nothing to sweep, the write itself may work
        return
    for entry in entries:
        try:
            if _TEMP.match(entry.name) and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            pass


def _disk_full(err: BaseException) -> bool:
    """An out-of-space error: OSError ENOSPC / EDQUOT, or safetensors' wrapper of one."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(err)
    return isinstance(err, SafetensorError) and ("No space left" in text or "os error 28" in text
                                                 or "StorageFull" in text or "code: 28" in text)


def _full(path: Path) -> DiskFullError:
    """The one clear error of a full disk while writing path."""
    return DiskFullError(errno.ENOSPC, f"no space left on the device holding {path} while writing it "
                         "(nothing was written; the old file, if any, is intact); free space there, or set "
                         "FVLIB_CACHE / FVLIB_FIGURES to a folder on a disk with room, and run again")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file in the same folder, then rename over path (never half-written).

    Clear errors for a path that is a folder and for a full disk; stale temps of killed writes in
    the folder are removed first (_sweep)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a folder; remove it or give "
                                "a file path inside it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path.parent)
        tmp, mode = _new_temp(path.parent, path.name)
    except OSError as err:  # a read-only folder: name it, not the temp file
        raise (_full(path) if _disk_full(err) else not_writable_error(path.parent, err)) from err
    try:
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) replace tmp with their own 0600 file
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if _disk_full(err):
            raise _full(path) from err
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write obj as indented JSON."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False)
    atomic_write(path, lambda p: p.write_text(text + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Atomically save a dict of tensors as safetensors, with string metadata (JSON-encoded)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"meta": json.dumps(to_jsonable(meta or {}))}
    atomic_write(path, lambda p: save_file(flat, str(p), metadata=header))


def _denied(path: Path) -> PermissionError:
    """The one clear error of a cache file fvlib may not read."""
    return PermissionError(errno.EACCES, f"permission denied reading {path}; fix its permissions or "
                           "ownership (chmod/chown), or run as its owner")


def _check_readable(path: Path) -> None:
    """Open path ourselves: safetensors reports unreadable files as 'No such file or directory'."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError as err:
        raise _denied(path) from err


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file written by save_tensors -> (tensors, meta); clear error if unreadable."""
    from safetensors import safe_open
    _check_readable(Path(path))  # OS errors (permission, missing, a folder) surface as themselves
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for truncated/foreign files
        raise ValueError(f"{path} is not a readable fvlib safetensors file ({err}); "
                         "delete it and recompute, or re-copy it from its source.") from err
    return tensors, meta


def _unusable(path: Path, reason: str) -> None:
    """Warn that a record file is ignored; returns None so callers recompute it."""
    warnings.warn(f"{path}: {reason}; ignoring it, so the record is recomputed", stacklevel=3)


def read_json(path: Path, required: Sequence[str] = ()) -> dict | None:
    """The JSON object at path, or None if missing (silently) or unusable (with a warning);
    PermissionError naming the file when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError as err:  # not damage: recomputing could not replace it either
        raise _denied(Path(path)) from err
    if not data.strip():
        return _unusable(path, "empty file")
    try:
        obj = json.loads(data)
    except ValueError as err:  # JSONDecodeError (truncated) and UnicodeDecodeError (binary junk)
        return _unusable(path, f"invalid JSON ({err})")
    if not isinstance(obj, dict):
        return _unusable(path, f"not a JSON object (a {type(obj).__name__})")
    missing = [k for k in required if k not in obj]
    if missing:
        return _unusable(path, f"missing key(s) {', '.join(missing)}")
    return obj


@contextlib.contextmanager
def computing(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `.<name>.lock` beside path: of several processes (or threads) about
    to compute the same cache entry, one computes and the others wait, then find it written.

    An OS file lock (flock): released when its holder exits or is killed, so it never goes stale;
    the empty lock file stays (deleting it while another process waits would break the exclusion).
    """
    from filelock import FileLock
    with FileLock(str(path.parent / f".{path.name}.lock"), mode=0o666):  # umask applies, as to entries
        yield


def tensors_path(name: str, key: str) -> Path:
    """Where cached_tensors(name, key, ...) keeps its entry."""
    return cache_dir() / f"{name}-{key}.safetensors"


def cached_tensors(name: str, key: str, compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]
                   ) -> tuple[dict[str, torch.Tensor], dict, bool]:
    """Return (tensors, meta, hit) from cache_dir()/name-key.safetensors, computing on a miss.

    Concurrent misses of one entry (two processes sharing FVLIB_CACHE) compute it once: the others
    wait for the lock and read what the first wrote (θ_o and Retrain are trained once, not twice).
    """
    path = tensors_path(name, key)
    if not path.exists():
        ensure_writable(path.parent, "FVLIB_CACHE")  # fail now, not after a long compute()
        with computing(path):
            if not path.exists():  # nobody wrote it while this process waited for the lock
                tensors, meta = compute()
                save_tensors(path, tensors, meta)
                return tensors, meta, False
    tensors, meta = load_tensors(path)
    return tensors, meta, True
