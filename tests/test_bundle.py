"""tools/bundle.py: size-capped tar.gz parts + manifest, verified and path-safe unpacking."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import struct
import tarfile
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bundle", Path(__file__).resolve().parent.parent / "tools" / "bundle.py")
bundle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundle)


def _fake_safetensors(n_floats: int, seed: int = 0) -> bytes:
    """A file with safetensors' layout: u64 header length, JSON header, then float32 bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}})
    header += " " * (-len(header) % 8)
    body = b"".join(struct.pack("<f", ((i * 7919 + seed) % 1000) / 997.0 - 0.5) for i in range(n_floats))
    return struct.pack("<Q", len(header)) + header.encode() + body + b"xy"  # odd tail on purpose


@pytest.fixture()
def tree(tmp_path):
    """figures/p, runs/p, a cache with records/vectors and a model file, plus unrelated files."""
    src = tmp_path / "src"
    files = {
        "figures/p/table1.json": b'{"a": 1}\n' * 50,
        "figures/p/fig.png": os.urandom(3000),
        "runs/p/00_setup.ipynb": b"{}" * 700,
        "data/cache/records/fv/abc.json": b'{"UA": 0.5}',
        "data/cache/manifests/digits-x.json": b"[1, 2, 3]",
        "data/cache/vectors/fv-1.safetensors": _fake_safetensors(300, 1),
        "data/cache/model-small_cnn-k.safetensors": _fake_safetensors(2000),
        "data/cache/data-digits-k.safetensors": _fake_safetensors(100, 2),
        "figures/other/x.json": b"{}",
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src, files


def test_roundtrip_several_parts(tree, tmp_path):
    src, files = tree
    sel = bundle.select([d.format(profile="p") for d in bundle.RESULTS_DIRS], src, missing_ok=True)
    assert "figures/other/x.json" not in sel and "data/cache/data-digits-k.safetensors" not in sel
    out = tmp_path / "out"
    m = bundle.pack(sel + ["data/cache/model-small_cnn-k.safetensors"], src, out, "res",
                    max_mb=2048 / bundle.MIB, shuffle_weights=True)
    parts = sorted(out.glob("res.part*"))
    assert len(parts) == len(m["parts"]) >= 3
    assert all(p.stat().st_size <= 2048 for p in parts)
    dest = tmp_path / "dest"
    bundle.unpack(parts, dest)
    for rel in sel + ["data/cache/model-small_cnn-k.safetensors"]:
        assert (dest / rel).read_bytes() == files[rel], rel
    shuffled = {e["path"] for e in m["files"] if "shuffle_offset" in e}
    assert shuffled == {"data/cache/vectors/fv-1.safetensors", "data/cache/model-small_cnn-k.safetensors"}
    # the CLI reads the manifest beside the parts and keeps the theta preset to the oldest model
    assert bundle.main(["unpack", *map(str, parts), "--to", str(tmp_path / "dest2")]) == 0
    assert bundle.theta_files(src) == ["data/cache/model-small_cnn-k.safetensors"]


def test_shuffle_is_exact_and_helps_compression():
    data = _fake_safetensors(5000)
    off = bundle._shuffle_offset(data)
    assert off > 8 and off % 8 == 0
    mixed = bundle.shuffle(data, off)
    assert len(mixed) == len(data) and bundle.unshuffle(mixed, off) == data
    assert bundle.unshuffle(bundle.shuffle(b"abcdefg", 0), 0) == b"abcdefg"
    assert bundle._shuffle_offset(b"not a safetensors file") == 0


def test_corrupt_part_is_refused_and_nothing_written(tree, tmp_path):
    src, _ = tree
    out = tmp_path / "out"
    bundle.pack(bundle.select(["figures/p", "runs/p"], src), src, out, "res", max_mb=1024 / bundle.MIB)
    parts = sorted(out.glob("res.part*"))
    blob = bytearray(parts[1].read_bytes())
    blob[10] ^= 0xFF
    parts[1].write_bytes(bytes(blob))
    dest = tmp_path / "dest"
    with pytest.raises(bundle.BundleError, match="sha256"):
        bundle.unpack(parts, dest)
    assert not (dest / "figures").exists()
    parts[1].unlink()  # a missing part is named
    with pytest.raises(bundle.BundleError, match="missing part"):
        bundle.unpack([parts[0]] + parts[2:], dest)
    assert bundle.main(["unpack", str(parts[0]), "--to", str(dest)]) == 3


def test_too_many_parts_leaves_nothing(tree, tmp_path):
    src, _ = tree
    out = tmp_path / "out"
    with pytest.raises(bundle.BundleError, match="more than 1 part"):
        bundle.pack(bundle.select(["figures/p"], src), src, out, "res", max_mb=512 / bundle.MIB,
                    max_parts=1)
    assert list(out.iterdir()) == []


def _evil_bundle(folder: Path, name: str, member: tarfile.TarInfo, payload: bytes = b"x") -> list[Path]:
    """A bundle whose stream and manifest agree but whose tar holds a hostile member."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    stream = gzip.compress(raw.getvalue())
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{name}.part00"
    part.write_bytes(stream)
    sha = hashlib.sha256(stream).hexdigest()
    (folder / f"{name}.json").write_text(json.dumps({
        "format": bundle.FORMAT, "name": name, "stream_sha256": sha, "stream_bytes": len(stream),
        "parts": [{"file": part.name, "bytes": len(stream), "sha256": sha}], "file_bytes": 1,
        "files": [{"path": member.name, "bytes": 1, "sha256": hashlib.sha256(payload).hexdigest()}]}))
    return [part]


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/abs-escape.txt", "a/../../escape.txt"])
def test_path_escape_refused(tmp_path, name):
    parts = _evil_bundle(tmp_path / "b", "evil", tarfile.TarInfo(name))
    dest = tmp_path / "root" / "inner"
    with pytest.raises(bundle.BundleError, match="escape"):
        bundle.unpack(parts, dest)
    assert not (tmp_path / "root" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_links_and_symlinked_folders_refused(tmp_path):
    link = tarfile.TarInfo("ln")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(bundle.BundleError, match="not a regular file"):
        bundle.unpack(_evil_bundle(tmp_path / "b1", "lnk", link), tmp_path / "r1")
    root = tmp_path / "r2"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)  # an existing link inside ROOT must not be followed out
    with pytest.raises(bundle.BundleError, match="outside"):
        bundle.unpack(_evil_bundle(tmp_path / "b2", "via", tarfile.TarInfo("out/x.txt")), root)
    assert not (tmp_path / "x.txt").exists()


def test_check_flags_weights_and_size(tmp_path):
    (tmp_path / "fig").mkdir()
    (tmp_path / "fig" / "a.json").write_bytes(b"{}")
    assert bundle.check([str(tmp_path / "fig")], 1.0) == []
    (tmp_path / "fig" / "m.safetensors").write_bytes(b"0" * 2048)
    problems = bundle.check([str(tmp_path / "fig")], 1024 / bundle.MIB)
    assert len(problems) == 2 and "weights" in problems[0] and "cap" in problems[1]


def test_a_wrong_sha256_for_a_later_file_changes_nothing_in_the_target(tree, tmp_path):
    """Every file is verified before any is moved into place: the target stays exactly as it was."""
    src, files = tree
    out = tmp_path / "out"
    sel = bundle.select(["figures/p", "runs/p"], src)
    bundle.pack(sel, src, out, "res")
    doc = json.loads((out / "res.json").read_text())
    doc["files"][1]["sha256"] = "0" * 64  # parts and stream intact, one file's hash wrong
    (out / "res.json").write_text(json.dumps(doc))
    dest = tmp_path / "dest"
    for rel in sel:  # older copies of the same files already in the target
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(b"old " + rel.encode())
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(bundle.BundleError, match=f"{doc['files'][1]['path']}: sha256 mismatch"):
        bundle.unpack(sorted(out.glob("res.part*")), dest)
    after = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before  # nothing overwritten, no temp files or staging folders left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "out", "src"]


def test_a_target_that_is_a_folder_is_named_and_nothing_moved(tree, tmp_path):
    src, _ = tree
    out = tmp_path / "out"
    sel = bundle.select(["figures/p"], src)
    bundle.pack(sel, src, out, "res")
    dest = tmp_path / "dest"
    (dest / sel[-1]).mkdir(parents=True)  # the last file's path is taken by a folder
    with pytest.raises(bundle.BundleError, match="is a folder"):
        bundle.unpack(sorted(out.glob("res.part*")), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["figures", "figures/p", sel[-1]]
