"""Pack files into size-capped tar.gz parts with a JSON manifest, and unpack them safely (stdlib only).

Used to bring results and θ_o back from a GPU machine, whose outputs come back as at most 8 files
of at most 16 MiB each, and to carry them into the next command (docs: README "Running on a GPU
machine"; driver: tools/gpu_run.sh).

    python tools/bundle.py pack SRC... --out DIR [--name N] [--max-mb 15] [--include GLOB...]
                                       [--exclude GLOB...] [--root .]
    python tools/bundle.py pack --preset results --profile quick --out DIR
    python tools/bundle.py pack --preset theta --out DIR [--files data/cache/model-x.safetensors]
    python tools/bundle.py unpack DIR/N.part* --to ROOT
    python tools/bundle.py check figures/quick runs/quick --max-mb 15     # no weights, size cap

A bundle N is DIR/N.part00, N.part01, ... (the gzip stream cut into pieces of at most --max-mb MiB)
plus DIR/N.json: every file's path, size and sha256, each part's size and sha256, and the sha256 of
the whole stream. `unpack` checks the parts and the stream before writing anything, refuses members
that are not plain files or whose path would leave ROOT, extracts every file into a staging folder
inside ROOT and checks its sha256, and only then renames the files into place: a bundle that fails
any check leaves ROOT as it was.

Float weights compress badly with gzip; `--shuffle` (on by default for the theta preset) stores
each *.safetensors member's tensor bytes as 4 byte planes (all first bytes, then all second bytes,
...), which gzip squeezes about 8 % further (ResNet-18: 39.5 -> 36.2 MiB). The manifest marks such
members; `unpack` restores them bit for bit and checks their sha256. A plain `tar xzf` of the parts
still works for every member not marked shuffled.
"""
from __future__ import annotations

import argparse
import fnmatch
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Sequence

FORMAT = "fvlib-bundle/1"
MIB = 1 << 20
DEFAULT_MAX_MB = 15.0  # the device returns files of at most 16 MiB; keep a margin
CACHE = "data/cache"
# What a profile's results are (results preset); the cache part is what a later command reuses.
RESULTS_DIRS = ("figures/{profile}", "runs/{profile}", f"{CACHE}/records", f"{CACHE}/manifests",
                f"{CACHE}/vectors", "fvlib/choices")  # choices: FV+ chosen once, committed
CACHE_DIRS = (f"{CACHE}/records", f"{CACHE}/manifests", f"{CACHE}/vectors")
THETA_GLOB = f"{CACHE}/model-*.safetensors"
THETA_CAP_MB = 50.0  # ResNet-18 (CIFAR-10) is 42.7 MiB; VGG-16-BN (ImageNet-10) 58.4 MiB is left out
WEIGHT_GLOBS = ("*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.bin", "*.npz", "*.npy", "*.pkl",
                "*.h5", "*.onnx")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class BundleError(Exception):
    """A bundle cannot be written or is not safe / not intact to unpack."""


# ----------------------------------------------------------------------------- byte planes
def _shuffle_offset(data: bytes) -> int:
    """Where a safetensors file's tensor bytes start (8 + header length), or 0 if not one."""
    if len(data) >= 8:
        (n,) = struct.unpack("<Q", data[:8])
        if 8 + n <= len(data) and data[8:9] == b"{":
            return 8 + n
    return 0


def shuffle(data: bytes, offset: int) -> bytes:
    """data[:offset], then the 4-byte-word region after it as 4 byte planes, then the tail."""
    n = (len(data) - offset) // 4 * 4
    body = data[offset:offset + n]
    return data[:offset] + b"".join(body[k::4] for k in range(4)) + data[offset + n:]


def unshuffle(data: bytes, offset: int) -> bytes:
    """Inverse of shuffle()."""
    n = (len(data) - offset) // 4 * 4
    q = n // 4
    body = bytearray(n)
    for k in range(4):
        body[k::4] = data[offset + k * q: offset + (k + 1) * q]
    return data[:offset] + bytes(body) + data[offset + n:]


# ----------------------------------------------------------------------------- selection
def _rel(path: Path, root: Path) -> str:
    rel = path.resolve().relative_to(root.resolve())
    return rel.as_posix()


def _match(rel: str, globs: Sequence[str]) -> bool:
    """fnmatch on the relative posix path ('*' crosses '/'), or on the base name alone."""
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(PurePosixPath(rel).name, g) for g in globs)


def select(sources: Sequence[str], root: Path, include: Sequence[str] = (),
           exclude: Sequence[str] = (), missing_ok: bool = False) -> list[str]:
    """Sorted relative paths of the regular files under sources (files or folders) inside root."""
    root = Path(root)
    found: set[str] = set()
    for src in sources:
        p = root / src
        if not p.exists():
            if missing_ok:
                continue
            raise BundleError(f"{src}: no such file or folder under {root}")
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            continue
        files = [p] if p.is_file() else [q for q in p.rglob("*") if q.is_file() and not q.is_symlink()]
        for f in files:
            rel = _rel(f, root)
            if rel.startswith("../"):
                raise BundleError(f"{f} is outside the root {root}")
            if ".tmp" in f.name and f.name.startswith("."):  # half-written atomic_write temp files
                continue
            if include and not _match(rel, include):
                continue
            if exclude and _match(rel, exclude):
                continue
            found.add(rel)
    return sorted(found)


def theta_files(root: Path, files: Sequence[str] = (), cap_mb: float = THETA_CAP_MB,
                all_models: bool = False) -> list[str]:
    """θ_o's model file: the given ones, else the oldest data/cache/model-*.safetensors under cap.

    θ_o is the first model a profile trains (every notebook's setup() trains it before any
    Retrain model), so the oldest model file is θ_o on a machine that ran one profile.
    """
    root = Path(root)
    if files:
        for f in files:
            if not (root / f).is_file():
                raise BundleError(f"{f}: no such file under {root}")
        return sorted(_rel(root / f, root) for f in files)
    cands = [Path(p) for p in glob.glob(str(root / THETA_GLOB))]
    cands = sorted((p for p in cands if p.stat().st_size <= cap_mb * MIB),
                   key=lambda p: (p.stat().st_mtime, p.name))
    if not cands:
        return []
    if len(cands) > 1 and not all_models:
        print(f"[bundle] {len(cands)} model files under {cap_mb:g} MiB; taking the oldest "
              f"({cands[0].name}) as θ_o", file=sys.stderr)
        cands = cands[:1]
    return sorted(_rel(p, root) for p in cands)


# ----------------------------------------------------------------------------- pack
class _PartWriter(io.RawIOBase):
    """A write-only stream cut into DIR/<name>.partNN files of at most max_bytes each."""

    def __init__(self, out: Path, name: str, max_bytes: int, max_parts: int | None,
                 max_total: int | None):
        super().__init__()
        self.out, self.name, self.max_bytes = out, name, max_bytes
        self.max_parts, self.max_total = max_parts, max_total
        self.parts: list[dict] = []
        self.total = 0
        self.sha = hashlib.sha256()
        self._f: BinaryIO | None = None
        self._fsha = None
        self._fbytes = 0

    def writable(self) -> bool:
        return True

    def _open_next(self) -> None:
        self._close_current()
        idx = len(self.parts)
        if self.max_parts is not None and idx >= self.max_parts:
            raise BundleError(f"bundle {self.name} needs more than {self.max_parts} part(s) of "
                              f"{self.max_bytes / MIB:g} MiB")
        path = self.out / f"{self.name}.part{idx:02d}"
        self._f = open(path, "wb")
        self._fsha, self._fbytes = hashlib.sha256(), 0
        self.parts.append({"file": path.name, "bytes": 0, "sha256": ""})

    def _close_current(self) -> None:
        if self._f is not None:
            self._f.close()
            self.parts[-1].update(bytes=self._fbytes, sha256=self._fsha.hexdigest())
            self._f = None

    def write(self, b) -> int:
        b = memoryview(b).cast("B")
        n = len(b)
        if self.max_total is not None and self.total + n > self.max_total:
            raise BundleError(f"bundle {self.name} exceeds {self.max_total / MIB:g} MiB in total")
        pos = 0
        while pos < n:
            if self._f is None or self._fbytes >= self.max_bytes:
                self._open_next()
            take = min(n - pos, self.max_bytes - self._fbytes)
            chunk = b[pos:pos + take]
            self._f.write(chunk)
            self._fsha.update(chunk)
            self.sha.update(chunk)
            self._fbytes += take
            pos += take
        self.total += n
        return n

    def finish(self) -> None:
        if not self.parts:  # an empty stream still gets one (empty) part
            self._open_next()
        self._close_current()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.hexdigest()


def _remove_bundle(out: Path, name: str) -> None:
    for p in out.glob(f"{glob.escape(name)}.part[0-9]*"):
        p.unlink()
    (out / f"{name}.json").unlink(missing_ok=True)


def pack(files: Sequence[str], root: Path, out: Path, name: str, max_mb: float = DEFAULT_MAX_MB,
         shuffle_weights: bool = False, max_parts: int | None = None,
         max_total_mb: float | None = None, level: int = 6, extra: dict | None = None) -> dict:
    """Write out/<name>.partNN + out/<name>.json for files (relative to root); return the manifest.

    On any error (too many parts, too large) the bundle's files are removed and BundleError raised.
    """
    if not _NAME.match(name):
        raise BundleError(f"bundle name {name!r}: use letters, digits, '.', '_' and '-' only")
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_bundle(out, name)  # stale parts of an earlier pack would be picked up by a glob
    max_bytes = int(max_mb * MIB)
    if max_bytes < 1:
        raise BundleError("--max-mb must be positive")
    writer = _PartWriter(out, name, max_bytes, max_parts,
                         None if max_total_mb is None else int(max_total_mb * MIB))
    entries = []
    start = time.perf_counter()
    try:
        with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=level, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in files:
                    path = root / rel
                    st = path.stat()
                    info = tarfile.TarInfo(rel)
                    info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
                    entry = {"path": rel, "bytes": st.st_size, "mtime": int(st.st_mtime)}
                    if shuffle_weights and rel.endswith(".safetensors"):
                        data = path.read_bytes()
                        off = _shuffle_offset(data)
                        entry.update(sha256=hashlib.sha256(data).hexdigest(), shuffle_offset=off)
                        tar.addfile(info, io.BytesIO(shuffle(data, off)))
                    else:
                        entry["sha256"] = _file_sha(path)
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    entries.append(entry)
        writer.finish()
    except BaseException:
        writer._close_current()
        _remove_bundle(out, name)
        raise
    manifest = {"format": FORMAT, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "codec": "tar.gz", "max_part_bytes": max_bytes,
                "shuffle": "4 byte planes of *.safetensors tensor data (members with shuffle_offset)",
                "stream_bytes": writer.total, "stream_sha256": writer.sha.hexdigest(),
                "parts": writer.parts, "files": entries,
                "file_bytes": sum(e["bytes"] for e in entries),
                "seconds": round(time.perf_counter() - start, 2), **(extra or {})}
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / f"{name}.json")  # written last: a bundle without it is incomplete
    return manifest


# ----------------------------------------------------------------------------- unpack
def _manifest_for(parts: Sequence[Path], manifest: Path | None) -> tuple[Path, dict]:
    if manifest is None:
        names = {re.sub(r"\.part\d+$", "", p.name) for p in parts}
        if len(names) != 1:
            raise BundleError(f"parts of several bundles given ({', '.join(sorted(names))}); "
                              "unpack one bundle at a time")
        manifest = parts[0].parent / f"{names.pop()}.json"
    try:
        doc = json.loads(Path(manifest).read_text())
    except FileNotFoundError as err:
        raise BundleError(f"no manifest {manifest}: the bundle is incomplete") from err
    except ValueError as err:
        raise BundleError(f"manifest {manifest} is not valid JSON ({err})") from err
    if doc.get("format") != FORMAT:
        raise BundleError(f"{manifest}: not a {FORMAT} manifest")
    return Path(manifest), doc


def verify(parts: Sequence[Path], manifest: Path | None = None) -> tuple[list[Path], dict]:
    """Check that the parts are exactly the manifest's and that their bytes hash to it."""
    parts = [Path(p) for p in parts]
    if not parts:
        raise BundleError("no parts given")
    mpath, doc = _manifest_for(parts, manifest)
    by_name = {p.name: p for p in parts}
    folder = parts[0].parent
    ordered = []
    for part in doc["parts"]:
        p = by_name.get(part["file"]) or (folder / part["file"])
        if not p.is_file():
            raise BundleError(f"missing part {part['file']} (the manifest lists {len(doc['parts'])})")
        if p.stat().st_size != part["bytes"]:
            raise BundleError(f"{p.name}: {p.stat().st_size} bytes, the manifest says {part['bytes']}")
        ordered.append(p)
    extra = set(by_name) - {p["file"] for p in doc["parts"]}
    if extra:
        raise BundleError(f"parts not in the manifest {mpath.name}: {', '.join(sorted(extra))}")
    whole = hashlib.sha256()
    for p, part in zip(ordered, doc["parts"]):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(MIB):
                h.update(block)
                whole.update(block)
        if part.get("sha256") and h.hexdigest() != part["sha256"]:
            raise BundleError(f"{p.name}: sha256 mismatch (corrupt or from another pack)")
    if whole.hexdigest() != doc["stream_sha256"]:
        raise BundleError(f"bundle {doc['name']}: stream sha256 mismatch")
    return ordered, doc


class _Concat(io.RawIOBase):
    """The parts read back as one stream."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__()
        self._paths, self._f = list(paths), None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while True:
            if self._f is None:
                if not self._paths:
                    return 0
                self._f = open(self._paths.pop(0), "rb")
            n = self._f.readinto(b)
            if n:
                return n
            self._f.close()
            self._f = None


def _safe_target(root: Path, name: str) -> Path:
    """root/name, refusing absolute names, '..', and anything resolving outside root."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name or "\x00" in name:
        raise BundleError(f"refusing member {name!r}: its path would escape {root}")
    target = (root / pure).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise BundleError(f"refusing member {name!r}: it resolves outside {root} (via a link?)")
    return root / pure


def _check_members(ordered: Sequence[Path], root: Path, expected: dict) -> None:
    """First pass over the stream: every member a plain file with a safe, expected path."""
    with tarfile.open(fileobj=_Concat(ordered), mode="r|gz") as tar:
        for m in tar:
            if not m.isfile():
                raise BundleError(f"refusing member {m.name!r}: not a regular file ({m.type!r})")
            _safe_target(root, m.name)
            if m.name not in expected:
                raise BundleError(f"member {m.name!r} is not in the manifest")


def _extract_one(src: BinaryIO, dest: Path, entry: dict) -> str:
    """Write one member's bytes (byte planes restored) to dest; return their sha256."""
    with open(dest, "wb") as f:
        if "shuffle_offset" in entry:
            data = unshuffle(src.read(), entry["shuffle_offset"])
            f.write(data)
            return hashlib.sha256(data).hexdigest()
        h = hashlib.sha256()
        while block := src.read(MIB):
            h.update(block)
            f.write(block)
        return h.hexdigest()


def _extract_verified(ordered: Sequence[Path], staging: Path, expected: dict) -> list[str]:
    """Second pass: every member into staging/, its sha256 and mtime checked; the names written."""
    written = []
    with tarfile.open(fileobj=_Concat(ordered), mode="r|gz") as tar:
        for m in tar:
            entry = expected[m.name]
            dest = staging / PurePosixPath(m.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if _extract_one(tar.extractfile(m), dest, entry) != entry["sha256"]:
                raise BundleError(f"{m.name}: sha256 mismatch after extraction (nothing in the target "
                                  "was changed); re-copy the bundle or re-pack it")
            os.chmod(dest, 0o644)
            os.utime(dest, (entry.get("mtime", m.mtime),) * 2)
            written.append(m.name)
    return written


def _move_into_place(staging: Path, root: Path, names: Sequence[str]) -> None:
    """Rename every verified file from staging/ over its target (same file system: no copy)."""
    targets = {n: _safe_target(root, n) for n in names}
    blocked = [n for n, t in targets.items() if t.is_dir()]
    if blocked:
        raise BundleError(f"cannot unpack {blocked[0]!r}: {targets[blocked[0]]} is a folder (nothing in "
                          "the target was changed); move it away and unpack again")
    for name, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        _safe_target(root, name)  # a folder created above cannot be a link, but re-check
        os.replace(staging / PurePosixPath(name), target)


def unpack(parts: Sequence[str | Path], to: str | Path, manifest: str | Path | None = None) -> dict:
    """Verify a bundle, extract every file into a staging folder inside `to` and check each sha256,
    then rename them into place (mtimes kept): when anything fails, nothing in `to` changes."""
    ordered, doc = verify([Path(p) for p in parts], None if manifest is None else Path(manifest))
    root = Path(to)
    root.mkdir(parents=True, exist_ok=True)
    expected = {e["path"]: e for e in doc["files"]}
    _check_members(ordered, root, expected)
    # inside root, so the final moves are renames on one file system; removed whatever happens
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{doc['name']}.", suffix=".unpacking"))
    try:
        written = _extract_verified(ordered, staging, expected)
        missing = set(expected) - set(written)
        if missing:
            raise BundleError(f"bundle {doc['name']}: {len(missing)} listed file(s) absent from the stream")
        _move_into_place(staging, root, written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return doc


# ----------------------------------------------------------------------------- check
def check(paths: Sequence[str], max_mb: float) -> list[str]:
    """Problems with committing paths: weight-like files, or more than max_mb MiB together."""
    problems, total = [], 0
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]
        for f in files:
            total += f.stat().st_size
            if any(fnmatch.fnmatch(f.name, g) for g in WEIGHT_GLOBS):
                problems.append(f"{f}: looks like weights/arrays ({f.stat().st_size / MIB:.2f} MiB)")
    if total > max_mb * MIB:
        problems.append(f"{total / MIB:.2f} MiB in total, over the {max_mb:g} MiB cap")
    print(f"[bundle] check: {total / MIB:.2f} MiB in {', '.join(map(str, paths))}")
    return problems


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/bundle.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("pack", help="write DIR/<name>.partNN + DIR/<name>.json")
    k.add_argument("sources", nargs="*", help="files or folders, relative to --root")
    k.add_argument("--out", required=True, help="folder for the parts and the manifest")
    k.add_argument("--name", help="bundle name (default: the preset's, else 'bundle')")
    k.add_argument("--root", default=".", help="paths are stored relative to this folder (default .)")
    k.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, help="MiB per part (default 15)")
    k.add_argument("--max-parts", type=int, help="fail (exit 3, nothing left) if more parts needed")
    k.add_argument("--max-total-mb", type=float, help="fail (exit 3) if the stream is larger")
    k.add_argument("--include", nargs="+", default=[], metavar="GLOB")
    k.add_argument("--exclude", nargs="+", default=[], metavar="GLOB")
    k.add_argument("--preset", choices=("results", "cache", "theta"),
                   help="results: figures/P runs/P + cache records, manifests, vectors; cache: only "
                        "the latter three; theta: θ_o's model file")
    k.add_argument("--profile", help="profile for the results preset (figures/P, runs/P)")
    k.add_argument("--files", nargs="+", default=[], help="theta preset: these model files")
    k.add_argument("--cap-mb", type=float, default=THETA_CAP_MB,
                   help="theta preset: ignore model files larger than this (default 50 MiB)")
    k.add_argument("--all-models", action="store_true",
                   help="theta preset: every model file under the cap, not only the oldest")
    k.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="byte-plane *.safetensors members (default: on for theta, else off)")
    k.add_argument("--level", type=int, default=6, help="gzip level (default 6)")
    u = sub.add_parser("unpack", help="verify and extract a bundle")
    u.add_argument("parts", nargs="+", help="DIR/<name>.part* (the manifest DIR/<name>.json beside)")
    u.add_argument("--to", required=True, help="root folder to extract into")
    u.add_argument("--manifest", help="manifest path (default: beside the parts)")
    c = sub.add_parser("check", help="fail if paths hold weights or exceed a size cap")
    c.add_argument("paths", nargs="+")
    c.add_argument("--max-mb", type=float, default=15.0)
    return p


def _cmd_pack(a: argparse.Namespace) -> int:
    root = Path(a.root)
    if a.preset == "theta":
        files = theta_files(root, a.files, a.cap_mb, a.all_models)
        if not files:
            print(f"[bundle] no θ_o model file ({THETA_GLOB} under {a.cap_mb:g} MiB); nothing packed",
                  file=sys.stderr)
            return 4
    elif a.preset in ("results", "cache"):
        if a.preset == "results" and not a.profile:
            raise BundleError("--preset results needs --profile")
        dirs = [d.format(profile=a.profile) for d in
                (RESULTS_DIRS if a.preset == "results" else CACHE_DIRS)] + list(a.sources)
        files = select(dirs, root, a.include, a.exclude, missing_ok=True)
    else:
        if not a.sources:
            raise BundleError("give SRC paths or a --preset")
        files = select(a.sources, root, a.include, a.exclude)
    shuffle_on = a.preset == "theta" if a.shuffle is None else a.shuffle
    name = a.name or a.preset or "bundle"
    m = pack(files, root, Path(a.out), name, a.max_mb, shuffle_on, a.max_parts, a.max_total_mb,
             a.level, {"preset": a.preset, "profile": a.profile})
    print(f"[bundle] {name}: {len(m['files'])} files, {m['file_bytes'] / MIB:.2f} MiB -> "
          f"{len(m['parts'])} part(s), {m['stream_bytes'] / MIB:.2f} MiB in {a.out} ({m['seconds']} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "pack":
            return _cmd_pack(a)
        if a.cmd == "unpack":
            doc = unpack(a.parts, a.to, a.manifest)
            print(f"[bundle] {doc['name']}: verified and unpacked {len(doc['files'])} files "
                  f"({doc['file_bytes'] / MIB:.2f} MiB) into {a.to}")
            return 0
        problems = check(a.paths, a.max_mb)
        for line in problems:
            print(f"[bundle] check: {line}", file=sys.stderr)
        return 1 if problems else 0
    except BundleError as err:
        print(f"[bundle] error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
