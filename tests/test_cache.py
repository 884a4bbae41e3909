"""Cache files: umask modes, honest read errors, a writable cache checked before computing, read_json."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import stat
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch

from fvlib.cache import (NotWritableError, atomic_write, cached_tensors, ensure_writable,
                         load_tensors, read_json, save_tensors, write_json)

NOBODY = 65534


@contextlib.contextmanager
def umask(mask: int):
    """Run a block under a given umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def unprivileged(fn: Callable[[], object]) -> object:
    """fn() where file permissions apply: as is for a normal user, as `nobody` in a fork under root."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, run, send back (ok, value-or-exception), never return to pytest
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = (True, fn())
        except BaseException as err:  # noqa: BLE001 - shipped to the parent as is
            outcome = (False, err)
        with os.fdopen(write, "wb") as pipe:
            pipe.write(pickle.dumps(outcome))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        ok, value = pickle.loads(pipe.read())
    os.waitpid(pid, 0)
    if not ok:
        raise value
    return value


@pytest.fixture
def shared_dir():
    """A folder anyone may enter (tmp_path is private to root), so `nobody` meets only our chmods."""
    folder = Path(tempfile.mkdtemp(prefix="fvlib-test-"))
    folder.chmod(0o755)
    yield folder
    for sub in folder.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(folder)


def _tensors() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6.0).reshape(2, 3)}


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_mode_and_no_temp_is_left(tmp_path, mask):
    with umask(mask):
        write_json(tmp_path / "r.json", {"a": 1})
        save_tensors(tmp_path / "t.safetensors", _tensors(), {"k": 1})
        atomic_write(tmp_path / "x.txt", lambda p: p.write_text("x"))
    for name in ("r.json", "t.safetensors", "x.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "t.safetensors", "x.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})

    def boom(p: Path) -> None:
        p.write_text("{half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_unreadable_cache_file_reports_permissions_not_corruption(shared_dir):
    path = shared_dir / "m.safetensors"
    save_tensors(path, _tensors())
    path.chmod(0)
    with pytest.raises(PermissionError) as info:
        unprivileged(lambda: load_tensors(path))
    msg = str(info.value)
    assert str(path) in msg and "permission denied" in msg and "chmod/chown" in msg
    assert "delete it" not in msg


@pytest.mark.parametrize("keep", [0, 5, 40])
def test_truncated_cache_file_says_delete_and_recompute(tmp_path, keep):
    path = tmp_path / "m.safetensors"
    save_tensors(path, _tensors(), {"k": 1})
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ValueError, match="delete it and recompute"):
        load_tensors(path)


def test_load_tensors_round_trip(tmp_path):
    save_tensors(tmp_path / "m.safetensors", _tensors(), {"k": [1, 2]})
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    assert torch.equal(tensors["w"], _tensors()["w"]) and meta == {"k": [1, 2]}


def test_read_only_cache_fails_before_computing(shared_dir, monkeypatch):
    cache = shared_dir / "cache"
    cache.mkdir(mode=0o555)
    cache.chmod(0o555)
    monkeypatch.setenv("FVLIB_CACHE", str(cache))

    def compute():
        raise AssertionError("compute() ran although the result could not be saved")
    with pytest.raises(NotWritableError) as info:
        unprivileged(lambda: cached_tensors("model-x", "k1", compute))
    assert str(cache) in str(info.value) and "FVLIB_CACHE" in str(info.value)


def test_read_only_cache_still_serves_hits(shared_dir, monkeypatch):
    cache = shared_dir / "cache"
    monkeypatch.setenv("FVLIB_CACHE", str(cache))
    with umask(0o022):
        cached_tensors("model-x", "k1", lambda: (_tensors(), {"k": 1}))
    cache.chmod(0o555)
    tensors, meta, hit = unprivileged(lambda: cached_tensors("model-x", "k1", lambda: 1 / 0))
    assert hit and meta == {"k": 1} and torch.equal(tensors["w"], _tensors()["w"])


def test_concurrent_misses_compute_an_entry_once(tmp_path, monkeypatch):
    """Two workers on one FVLIB_CACHE (threads here: the lock is flock, which excludes per open file,
    so threads contend exactly as processes do) train θ_o once; the second reads the first's."""
    monkeypatch.setenv("FVLIB_CACHE", str(tmp_path))
    calls, start = [], threading.Barrier(2)

    def compute():
        calls.append(threading.get_ident())
        time.sleep(0.3)  # a long training: the other thread arrives meanwhile
        return _tensors(), {"by": threading.get_ident()}

    def worker(out: list):
        start.wait()
        out.append(cached_tensors("model-x", "k1", compute))
    outs: list = []
    threads = [threading.Thread(target=worker, args=(outs,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(hit for _t, _m, hit in outs) == [False, True]
    assert outs[0][1] == outs[1][1] == {"by": calls[0]}
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["model-x-k1.safetensors"]


def test_ensure_writable_creates_the_folder_or_names_it(tmp_path):
    folder = ensure_writable(tmp_path / "a" / "b")
    assert folder.is_dir() and not list(folder.iterdir())  # the probe file is gone
    (tmp_path / "file").write_text("")
    with pytest.raises(NotWritableError, match="FVLIB_CACHE") as info:
        ensure_writable(tmp_path / "file" / "cache", "FVLIB_CACHE")
    assert str(tmp_path / "file" / "cache") in str(info.value)


def test_ensure_writable_of_the_cache_names_fvlib_cache_by_itself(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FVLIB_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(NotWritableError, match="set FVLIB_CACHE"):
        ensure_writable(tmp_path / "file" / "cache" / "records")
    monkeypatch.setenv("FVLIB_FIGURES", str(tmp_path / "file" / "figures"))
    with pytest.raises(NotWritableError, match="set FVLIB_FIGURES"):
        ensure_writable(tmp_path / "file" / "figures" / "smoke")


def test_cache_dir_that_cannot_be_created_names_fvlib_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FVLIB_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(NotWritableError, match="FVLIB_CACHE"):
        cached_tensors("model-x", "k1", lambda: (_tensors(), {}))


def test_read_json_returns_the_object_and_none_silently_when_missing(tmp_path):
    write_json(tmp_path / "r.json", {"a": 1, "b": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_json(tmp_path / "r.json", required=["a", "b"]) == {"a": 1, "b": 2}
        assert read_json(tmp_path / "missing.json", required=["a"]) is None


@pytest.mark.parametrize("text, reason", [
    ("", "empty file"),
    ("  \n", "empty file"),
    ('{"a": 1, "b": [1, 2', "invalid JSON"),
    ("\udcff", "invalid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"a": 1}', "missing key"),
])
def test_read_json_warns_and_returns_none_for_an_unusable_record(tmp_path, text, reason):
    path = tmp_path / "r.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.warns(UserWarning, match=reason) as record:
        assert read_json(path, required=("a", "b")) is None
    assert str(path) in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller, not at fvlib.cache


def test_a_read_only_subfolder_of_the_cache_fails_before_computing(shared_dir, monkeypatch):
    """records/<kind>/ read-only in a writable cache: NotWritableError naming it, before compute()
    (records.grid and the vector cache call ensure_writable(cache_dir()) before they compute)."""
    cache = shared_dir / "cache"
    (cache / "records" / "study").mkdir(parents=True)
    for folder in (cache, cache / "records"):
        folder.chmod(0o777)
    (cache / "records" / "study").chmod(0o555)
    monkeypatch.setenv("FVLIB_CACHE", str(cache))
    with pytest.raises(NotWritableError, match="FVLIB_CACHE") as info:
        unprivileged(lambda: ensure_writable(cache))
    assert str(cache / "records" / "study") in str(info.value)

    def compute():
        raise AssertionError("compute() ran although its cache could not be written")
    with pytest.raises(NotWritableError, match="records/study"):
        unprivileged(lambda: cached_tensors("model-x", "k1", compute))


def test_an_unreadable_record_is_one_clear_error(shared_dir):
    path = shared_dir / "r.json"
    write_json(path, {"a": 1})
    path.chmod(0)
    with pytest.raises(PermissionError) as info:
        unprivileged(lambda: read_json(path, required=("a",)))
    msg = str(info.value)
    assert str(path) in msg and "permission denied" in msg and "chmod/chown" in msg


def _disk_full(_path: Path) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_the_fix(tmp_path, monkeypatch):
    from safetensors import SafetensorError
    from fvlib import cache
    with pytest.raises(cache.DiskFullError) as info:
        atomic_write(tmp_path / "r.json", _disk_full)
    assert str(tmp_path / "r.json") in str(info.value) and "free space" in str(info.value)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)

    def safetensors_full(*_args, **_kw):  # how safetensors reports ENOSPC: its own error type
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')
    monkeypatch.setattr(cache, "save_file", safetensors_full)
    with pytest.raises(cache.DiskFullError, match="FVLIB_CACHE") as info:
        save_tensors(tmp_path / "m.safetensors", _tensors())
    assert str(tmp_path / "m.safetensors") in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_stale_temp_files_of_killed_writes_are_removed_on_the_next_write(tmp_path):
    old = time.time() - 2 * cache_module().STALE_TEMP_SECONDS
    stale = [tmp_path / ".r.json.0123456789abcdef.tmp", tmp_path / ".fvlib-write-test-abc123"]
    fresh = tmp_path / ".s.json.fedcba9876543210.tmp"  # a write in progress elsewhere: kept
    other = [tmp_path / ".hidden", tmp_path / "notes.tmp", tmp_path / ".x.0123.tmp"]
    for p in stale + [fresh] + other:
        p.write_text("x")
    for p in stale + other:
        os.utime(p, (old, old))
    write_json(tmp_path / "new.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, "new.json"] + [p.name for p in other])


def test_saving_onto_a_folder_names_the_folder_not_a_temp_file(tmp_path):
    target = tmp_path / "m.safetensors"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        save_tensors(target, _tensors())
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def cache_module():
    from fvlib import cache
    return cache


def test_writing_into_a_read_only_folder_names_the_folder(shared_dir, monkeypatch):
    monkeypatch.setenv("FVLIB_CACHE", str(shared_dir))
    folder = shared_dir / "manifests"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    with pytest.raises(NotWritableError, match="set FVLIB_CACHE") as info:
        unprivileged(lambda: write_json(folder / "m.json", {"a": 1}))
    assert str(folder) in str(info.value) and ".tmp" not in str(info.value)
