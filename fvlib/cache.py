"""Content-addressed on-disk cache with atomic writes: models, vectors, arrays and records."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from fvlib import __version__
from fvlib.paths import cache_dir
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


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file in the same folder, then rename over path (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file written by save_tensors -> (tensors, meta); clear error if corrupt."""
    from safetensors import safe_open
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    except Exception as err:  # safetensors raises several types for truncated/foreign files
        raise ValueError(f"{path} is not a readable fvlib safetensors file ({err}); "
                         "delete it and recompute, or re-copy it from its source.") from err
    return tensors, meta


def cached_tensors(name: str, key: str, compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]
                   ) -> tuple[dict[str, torch.Tensor], dict, bool]:
    """Return (tensors, meta, hit) from cache_dir()/name-key.safetensors, computing on a miss."""
    path = cache_dir() / f"{name}-{key}.safetensors"
    if path.exists():
        tensors, meta = load_tensors(path)
        return tensors, meta, True
    tensors, meta = compute()
    save_tensors(path, tensors, meta)
    return tensors, meta, False
