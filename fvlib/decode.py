"""Encoded images -> (H, W, 3) uint8 pixels, in this process or on a process pool; tar streaming.

The pool decodes chunks of many images per task (low IPC) while the caller is still reading the
source, and returns the images in input order, bit-identical to in-process decoding. A tar archive
is read in one pass, its decompression in a thread ahead of the header parsing, which a fast scan
does for plain headers (tarfile's Python parsing would be the serial bottleneck of a 16-core load).
No torch here: forked workers only need numpy and Pillow.
"""
from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import multiprocessing
import os
import queue
import re
import sys
import tarfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Union

import numpy as np
from PIL import Image

Payload = Union[bytes, Path]  # encoded bytes (from an archive), or a file the decoder reads itself

POOL_MIN_IMAGES = 2000  # below this, starting workers costs more than decoding in-process
CHUNK = 500             # images per pool task: ~1.5 MB back per CIFAR chunk, ~120 tasks for 60k
MAX_WORKERS = 16


class ImageDecodeError(Exception):
    """One image failed to decode; fvlib.data turns it into a DataError naming the source and fix."""

    def __init__(self, member: str, reason: str):
        super().__init__(member, reason)  # args carry both, so the error pickles back from a worker
        self.member, self.reason = member, reason


def default_workers() -> int:
    """FVLIB_DECODE_WORKERS if set, else the cores this process may run on (affinity), at most 16."""
    if os.environ.get("FVLIB_DECODE_WORKERS"):
        return max(1, int(os.environ["FVLIB_DECODE_WORKERS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, MAX_WORKERS)


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; 16-bit gray scales by 1/257 (rounded) instead of clipping at 255.

    Alpha is dropped (as torchvision's ImageFolder loader does). Pillow itself reduces 16-bit
    colour PNGs to their high byte while decoding, within one level of round(v / 257).
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L (16-bit PNG) and I: Pillow's convert clips
        v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        gray = ((2 * v + 257) // 514).astype(np.uint8)  # round(v / 257) in exact integer arithmetic
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode in ("P", "PA"):  # via RGBA: palette transparency would otherwise warn
        img = img.convert("RGBA")
    return img.convert("RGB")


def decode_one(payload: Payload, size: int | None, resize: int | None) -> np.ndarray:
    """bytes or file -> (H, W, 3) uint8; square resize (aspect not kept, as the paper), centre crop."""
    blob = payload.read_bytes() if isinstance(payload, Path) else payload
    img = to_rgb8(Image.open(io.BytesIO(blob)))
    if resize:
        img = img.resize((resize, resize), Image.BICUBIC)
    if size and resize and resize > size:
        off = (resize - size) // 2
        img = img.crop((off, off, off + size, off + size))
    elif size and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _decode_chunk(items: list[tuple[str, Payload]], size: int | None,
                  resize: int | None) -> list[np.ndarray]:
    """[(member, payload)] -> [(H, W, 3) uint8]; the first failure raises ImageDecodeError(member)."""
    out = []
    for member, payload in items:
        try:
            out.append(decode_one(payload, size, resize))
        except Exception as err:  # Pillow and file reads raise many types for a broken image
            raise ImageDecodeError(member, f"{type(err).__name__}: {err}") from None
    return out


def _decode_chunk_packed(items: list[tuple[str, Payload]], size: int | None,
                         resize: int | None) -> np.ndarray | list[np.ndarray]:
    """Pool task: like _decode_chunk, but one (n, H, W, 3) array when sizes agree (4x cheaper IPC)."""
    out = _decode_chunk(items, size, resize)
    return np.stack(out) if out and len({a.shape for a in out}) == 1 else out


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, n)):
        yield chunk


def _context() -> multiprocessing.context.BaseContext:
    """fork on Linux, like torch's DataLoader: cheap, and no re-import of the caller's __main__."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)


def decode_images(items: Iterable[tuple[str, Payload]], size: int | None, resize: int | None,
                  workers: int | None = None) -> dict[str, np.ndarray]:
    """(member, payload) pairs -> {member: (H, W, 3) uint8} in input order (a repeated name: last wins).

    items may be a lazy stream (an archive being read): chunks go to the pool as they fill, so
    reading overlaps decoding. Fewer than POOL_MIN_IMAGES images or one worker: in-process.
    """
    workers = default_workers() if workers is None else workers
    stream = iter(items)
    head = list(itertools.islice(stream, POOL_MIN_IMAGES))
    if workers < 2 or len(head) < POOL_MIN_IMAGES:  # then the stream is exhausted, or one core
        head += stream
        return dict(zip((m for m, _ in head), _decode_chunk(head, size, resize)))
    pool = ProcessPoolExecutor(workers, mp_context=_context())
    try:
        jobs = [([m for m, _ in chunk], pool.submit(_decode_chunk_packed, chunk, size, resize))
                for chunk in _chunks(itertools.chain(head, stream), CHUNK)]
        # iterating a packed (n, H, W, 3) chunk yields (H, W, 3) views, as a list chunk yields arrays
        return {m: img for members, job in jobs for m, img in zip(members, job.result())}
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, don't decode the rest


# ----------------------------------------------------------------------------- tar streaming

def _decompressed(path: Path) -> BinaryIO:
    """The archive's tar bytes: xz, gzip and bzip2 recognised by their magic number."""
    with open(path, "rb") as f:
        magic = f.read(6)
    for prefix, opener in ((b"\xfd7zXZ\x00", lzma.open), (b"\x1f\x8b", gzip.open), (b"BZh", bz2.open)):
        if magic.startswith(prefix):
            return opener(path, "rb")
    return open(path, "rb")


class _ReadAhead(io.RawIOBase):
    """Reads a file in a thread, 1 MiB blocks ahead: xz/gzip/bzip2 decompression releases the GIL,
    so it overlaps the (pure Python) tar parsing of the caller. Errors re-raise in read()."""

    def __init__(self, f: BinaryIO, block: int = 1 << 20, depth: int = 16):
        self._q: queue.Queue = queue.Queue(depth)
        self._block, self._pos, self._stop = b"", 0, threading.Event()
        threading.Thread(target=self._fill, args=(f, block), daemon=True).start()

    def _fill(self, f: BinaryIO, block: int) -> None:
        try:
            with f:
                while data := f.read(block):
                    if not self._put(data):
                        return
            self._put(b"")
        except Exception as err:  # handed to the reader, which raises it
            self._put(err)

    def _put(self, item) -> bool:
        """Queue item unless the reader closed (then False; a full queue never blocks forever)."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (a short read at a block end is fine for tarfile), b"" at the end."""
        if self._pos == len(self._block):
            item = self._q.get()
            if isinstance(item, Exception) or not item:
                self._q.put(item)  # leave the end (or the error) for any later read
                if isinstance(item, Exception):
                    raise item
                return b""
            self._block, self._pos = item, 0
        end = len(self._block) if n is None or n < 0 else self._pos + n
        out = self._block[self._pos:end]
        self._pos += len(out)
        return out

    def read_exact(self, n: int) -> bytes:
        """n bytes, fewer only at the end of the stream."""
        parts = []
        while n > 0 and (part := self.read(n)):
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        self._stop.set()
        super().close()


class _NotPlain(Exception):
    """A tar header the fast scan leaves to tarfile (pax, GNU long names, links, bad checksum...)."""


def _nts(field: bytes) -> str:
    """A NUL-terminated header string, decoded as tarfile decodes it."""
    return field.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")


def _octal(field: bytes) -> int:
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise _NotPlain from None


_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
# pax keys that change a regular file's name or bytes as tarfile reads them; others (mtime, xattrs,
# git archive's commit comment) don't, so the fast scan skips such a header
_PAX_RELEVANT = (b"path", b"size", b"linkpath", b"hdrcharset", b"GNU.sparse")


def _pax_harmless(records: bytes) -> bool:
    """Whether pax records ("<length> <key>=<value>\n" each) leave names and sizes alone."""
    pos = 0
    while pos < len(records):
        match = _PAX_RECORD.match(records, pos)
        if not match or int(match.group(1)) == 0:
            return False
        if match.group(2).startswith(_PAX_RELEVANT):
            return False
        pos += int(match.group(1))
    return True


def _plain_files(raw: _ReadAhead) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files, as tarfile reads them, while headers are plain ustar/GNU.

    Raises _NotPlain at the first header it does not handle; a short read or a bad checksum also
    goes to tarfile, which then decides between an error and the end of the archive.
    """
    while True:
        h = raw.read_exact(512)
        if len(h) == 512 and h.count(0) == 512:
            return  # the end-of-archive block, where tarfile stops too
        if len(h) < 512 or h[124] & 0x80:  # truncated, or a base-256 size
            raise _NotPlain
        if _octal(h[148:156]) != 256 + sum(h) - sum(h[148:156]):  # the chksum field counts as spaces
            raise _NotPlain
        kind, name, size = h[156:157], _nts(h[:100]), _octal(h[124:136])
        if kind == b"5" or (kind == b"\0" and name.endswith("/")):
            if size:  # tarfile would not skip a directory's data
                raise _NotPlain
            continue
        if kind not in (b"0", b"\0", b"x", b"g"):
            raise _NotPlain
        data = raw.read_exact(size + (-size) % 512)[:size]
        if len(data) < size:
            raise _NotPlain
        if kind in (b"x", b"g"):  # pax header for the next file (x) or all later ones (g)
            if not _pax_harmless(data):
                raise _NotPlain
            continue
        prefix = _nts(h[345:500])
        yield (f"{prefix}/{name}" if prefix else name), data


def tar_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file of a tar archive, in archive order, as tarfile reads them.

    One streaming pass (tarfile's random-access mode decompresses twice: the member list, then a
    seek back for the contents). At a header the fast scan does not handle, tarfile reads the
    archive again from the start and skips the files already yielded.
    """
    done = 0
    with _ReadAhead(_decompressed(path)) as raw:
        try:
            for item in _plain_files(raw):
                yield item
                done += 1
            return
        except _NotPlain:
            pass
    with _ReadAhead(_decompressed(path)) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for m in itertools.islice((m for m in tar if m.isfile()), done, None):
            yield m.name, tar.extractfile(m).read()
