"""Loaders on small real archives and folders, the digits data, and every bad-input error."""
from __future__ import annotations

import io
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fvlib import data, decode

CLASSES = ["airplane", "bird", "cat"]  # sorted order = label order


def _jpeg(digits, i: int, size: int = 32) -> bytes:
    """A real JPEG encoding of digits training image i at the given size."""
    img = Image.fromarray(digits.train_x[i].numpy()).resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tree(digits, root: Path, test_name="test", per_class=(4, 2), size=32, classes=CLASSES) -> Path:
    """train/<class>/*.jpg and <test_name>/<class>/*.jpg made from real digit images."""
    k = 0
    for split, n in (("train", per_class[0]), (test_name, per_class[1])):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                (root / split / c / f"{j:04d}.jpg").write_bytes(_jpeg(digits, k, size))
                k += 1
    return root


def _archive(folder: Path, path: Path, top: str = "") -> Path:
    """folder's train/, test/, val/ as a tar (compression from path's suffix), under top/ if given."""
    mode = "w:xz" if path.name.endswith(".xz") else "w"
    with tarfile.open(path, mode) as tar:
        for sub in ("train", "test", "val"):
            if (folder / sub).exists():
                tar.add(folder / sub, arcname=f"{top}/{sub}" if top else sub)
    return path


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def pool_forced(monkeypatch) -> list:
    """Make decode_images use a 2-worker pool in 3-image chunks on any input; records pool starts."""
    started = []

    class Spy(ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(decode, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(decode, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(decode, "CHUNK", 3)
    monkeypatch.setenv("FVLIB_DECODE_WORKERS", "2")
    return started


def test_digits_is_embedded_and_deterministic(digits):
    assert digits.train_x.shape == (1347, 32, 32, 3) and digits.test_x.shape == (450, 32, 32, 3)
    assert digits.train_x.dtype == torch.uint8 and digits.train_y.dtype == torch.int64
    assert digits.classes == [str(i) for i in range(10)]
    assert torch.bincount(digits.test_y).min() >= 40  # stratified
    again = data.load("digits")
    assert torch.equal(again.train_x, digits.train_x) and again.fingerprint == digits.fingerprint


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_cifar_layout_loads(digits, tmp_path, kind):
    folder = _tree(digits, tmp_path / "tree")
    root = folder if kind == "folder" else _archive(folder, tmp_path / "c.tar.xz")
    d = data.load("cifar10", root=root)
    assert d.classes == CLASSES
    assert d.train_x.shape == (12, 32, 32, 3) and d.test_x.shape == (6, 32, 32, 3)
    assert d.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert d.train_x.dtype == torch.uint8
    # the decoded pixels are the JPEG's pixels (lossy vs the digit, so compare to PIL's decode)
    ref = np.asarray(Image.open(io.BytesIO(_jpeg(digits, 0))).convert("RGB"))
    assert np.array_equal(d.train_x[0].numpy(), ref)


def test_imagenet_layout_with_resize_and_crop(digits, tmp_path):
    folder = _tree(digits, tmp_path / "inet", test_name="val", size=64)
    d = data.load("imagenet10", root=folder, image_size=48, resize=56)
    assert d.train_x.shape == (12, 48, 48, 3) and d.test_x.shape == (6, 48, 48, 3)
    assert data.load("imagenet10", root=folder).train_x.shape[1:] == (64, 64, 3)


def test_decoded_arrays_come_from_cache(digits, tmp_path, monkeypatch):
    folder = _tree(digits, tmp_path / "tree")
    first = data.load("cifar10", root=folder)
    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded twice"))
    second = data.load("cifar10", root=folder)
    assert torch.equal(first.train_x, second.train_x) and first.fingerprint == second.fingerprint


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(data.DataError, match="valid names: digits, cifar10, imagenet10"):
        data.load("mnist")


def test_empty_root_says_where_and_how(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("cifar10", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "download=True" in msg and "archive" in msg and "(3)" in msg


def test_corrupt_archive_is_named(tmp_path):
    bad = tmp_path / "broken.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00 definitely not a complete archive")
    with pytest.raises(data.DataError, match="cannot open archive .*broken.tar.xz"):
        data.load("cifar10", root=bad)


def test_undecodable_image_names_the_member(digits, tmp_path):
    folder = _tree(digits, tmp_path / "tree")
    (folder / "train" / "cat" / "0002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match=r"cannot decode image 'train/cat/0002.jpg'"):
        data.load("cifar10", root=folder)


def test_class_folders_must_match(digits, tmp_path):
    folder = _tree(digits, tmp_path / "tree")
    (folder / "test" / "cat").rename(folder / "test" / "dog")
    with pytest.raises(data.DataError, match=r"class folders differ.*only in train \['cat'\].*\['dog'\]"):
        data.load("cifar10", root=folder)


def test_subset_and_to_keep_dtypes(digits):
    sub = digits.subset(100, 50)
    assert sub.train_x.shape[0] == 100 and sub.test_y.shape[0] == 50
    assert sub.fingerprint != digits.fingerprint and sub.image_shape == (3, 32, 32)


# ----------------------------------------------------------------------------- parallel decode

def test_pool_decode_is_bit_identical_and_in_order(digits, tmp_path, pool_forced, monkeypatch):
    folder = _tree(digits, tmp_path / "tree", per_class=(5, 2))  # 21 images: 7 chunks of 3
    (folder / "train" / "cat" / "0009.png").write_bytes(_png(digits.train_x[3].numpy()))
    archive = _archive(folder, tmp_path / "c.tar.xz")
    pooled = [data._decode(src, ("test",), 32, None)[0] for src in (folder, archive)]
    assert len(pool_forced) == 2  # the pool really ran, once per source
    monkeypatch.setenv("FVLIB_DECODE_WORKERS", "1")
    serial = [data._decode(src, ("test",), 32, None)[0] for src in (folder, archive)]
    assert len(pool_forced) == 2  # one worker: decoded in-process
    for p, s in zip(pooled, serial):
        assert p.keys() == s.keys() and all(torch.equal(p[k], s[k]) for k in p)
    assert serial[0]["train_x"].shape == (16, 32, 32, 3)


def test_pool_keeps_the_input_order_of_a_stream(digits, pool_forced):
    items = [(f"m{i:02d}", _jpeg(digits, i, size=24 + i % 3 * 8)) for i in range(10)]  # mixed sizes
    pooled = decode.decode_images(iter(items), None, None)
    serial = decode.decode_images(items, None, None, workers=1)
    assert list(pooled) == [m for m, _ in items] == list(serial)
    assert all(np.array_equal(pooled[m], serial[m]) for m in serial)


def test_small_sets_and_one_core_decode_in_process(digits, monkeypatch):
    started = []
    monkeypatch.setattr(decode, "ProcessPoolExecutor", lambda *a, **k: started.append(a))
    items = [(f"m{i}", _jpeg(digits, i)) for i in range(5)]
    assert len(decode.decode_images(items, 32, None, workers=4)) == 5  # 5 < POOL_MIN_IMAGES
    monkeypatch.setattr(decode, "POOL_MIN_IMAGES", 0)
    assert len(decode.decode_images(items, 32, None, workers=1)) == 5
    assert started == []
    monkeypatch.setenv("FVLIB_DECODE_WORKERS", "3")
    assert decode.default_workers() == 3


def test_undecodable_image_in_a_pool_names_the_member(digits, tmp_path, pool_forced):
    folder = _tree(digits, tmp_path / "tree")
    (folder / "test" / "bird" / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.UndecodableImage, match=r"cannot decode image 'test/bird/0001.jpg' in .*c.tar"):
        data.load("cifar10", root=_archive(folder, tmp_path / "c.tar"))
    assert pool_forced


# ----------------------------------------------------------------------------- tar streaming

def _tar(path: Path, fmt: int, extra: list[tarfile.TarInfo], pax_headers=None, mtime=0) -> Path:
    """A tar of two class folders, the extra members in the middle and one more file after them."""
    def add(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size, info.mtime = kind, link, len(data), mtime
        tar.addfile(info, io.BytesIO(data) if data else None)
    mode = "w:gz" if path.name.endswith(".gz") else "w"
    with tarfile.open(path, mode, format=fmt, pax_headers=pax_headers or {}) as tar:
        add(tar, "train", kind=tarfile.DIRTYPE)
        add(tar, "train/a/0.jpg", b"x" * 700)
        add(tar, "train/b", kind=tarfile.DIRTYPE)
        for info in extra:
            add(tar, info.name, b"e" * 5 if info.type == tarfile.REGTYPE else b"", info.type, info.linkname)
        add(tar, "train/b/2.jpg", b"z" * 512)
    return path


def _info(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


LONG = "train/" + "c" * 90 + "/" + "d" * 60 + ".jpg"  # > 100 characters


@pytest.mark.parametrize("case, fmt, extra, fast_only", [
    ("ustar.tar", tarfile.USTAR_FORMAT, [_info(LONG)], True),  # name split into prefix/name
    ("gnu.tar.gz", tarfile.GNU_FORMAT, [_info("train/b/1.jpg")], True),
    ("pax.tar", tarfile.PAX_FORMAT, [_info("train/b/1.jpg")], True),  # mtime + comment pax headers
    ("gnu-long.tar", tarfile.GNU_FORMAT, [_info(LONG)], False),  # GNU long-name header
    ("pax-unicode.tar", tarfile.PAX_FORMAT, [_info("train/a/\u00e9t\u00e9.jpg")], False),  # pax path
    ("link.tar", tarfile.USTAR_FORMAT, [_info("train/a/l.jpg", tarfile.SYMTYPE, "0.jpg")], False),
])
def test_tar_files_reads_every_format_as_tarfile(tmp_path, monkeypatch, case, fmt, extra, fast_only):
    pax = case.startswith("pax")
    path = _tar(tmp_path / case, fmt, extra, {"comment": "d7d05618"} if pax else None,
                mtime=1.5 if pax else 0)  # a fractional mtime gets a pax header per member
    with tarfile.open(path) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    opened, tar_open = [], tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a) or tar_open(*a, **k))
    assert len(expected) == (2 if extra[0].issym() else 3)
    assert list(decode.tar_files(path)) == expected
    assert (opened == []) == fast_only  # tarfile only for what the fast scan leaves to it


# ----------------------------------------------------------------------------- cache key

def test_folder_image_edited_in_place_is_decoded_again(digits, tmp_path):
    folder = _tree(digits, tmp_path / "tree")
    bmp = folder / "train" / "airplane" / "0000.jpg"  # BMP bytes: a fixed size whatever the pixels
    black, white = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)
    Image.fromarray(black).save(bmp, format="BMP")
    assert data.load("cifar10", root=folder).train_x[0].max() == 0
    size = bmp.stat().st_size
    Image.fromarray(white).save(bmp, format="BMP")
    assert bmp.stat().st_size == size
    # an edit happens later than the load it invalidates; don't depend on the clock's granularity
    st = bmp.stat()
    os.utime(bmp, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert data.load("cifar10", root=folder).train_x[0].min() == 255


# ----------------------------------------------------------------------------- layouts and modes

@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_images_in_class_subfolders_belong_to_the_class(digits, tmp_path, kind):
    folder = _tree(digits, tmp_path / "tree")
    nested = folder / "train" / "bird" / "extra" / "deeper"
    nested.mkdir(parents=True)
    (nested / "x.jpg").write_bytes(_jpeg(digits, 30))
    hidden = folder / "train" / "cat" / ".ipynb_checkpoints"  # hidden: not part of the data set
    hidden.mkdir()
    (hidden / "0000-checkpoint.jpg").write_bytes(b"stale copy")
    # an archive with a leading top folder, as tar czf cifar10.tar.gz cifar10/ makes
    root = folder if kind == "folder" else _archive(folder, tmp_path / "c.tar.xz", top="cifar10")
    d = data.load("cifar10", root=root)
    assert d.classes == CLASSES and d.train_y.tolist() == [0] * 4 + [1] * 5 + [2] * 4
    ref = np.asarray(Image.open(io.BytesIO(_jpeg(digits, 30))).convert("RGB"))
    assert np.array_equal(d.train_x[8].numpy(), ref)  # sorted last within bird


def test_split_and_class_of_a_member():
    tests = ("val", "validation")
    assert data._split_class("train/cat/a/b/x.jpg", tests) == ("train", "cat")
    assert data._split_class("imagenet/val/n01/x.JPEG", tests) == ("test", "n01")
    assert data._split_class("train/x.jpg", tests) is None  # no class folder
    assert data._split_class("train/._x.jpg", tests) is None
    assert data._split_class("extras/cat/x.jpg", tests) is None


def test_16bit_png_is_scaled_not_clipped(digits, tmp_path):
    folder = _tree(digits, tmp_path / "inet", test_name="val")
    values = [0, 128, 200, 257, 32896, 40000, 65280, 65535]
    png = folder / "train" / "airplane" / "0000.png"
    Image.fromarray(np.tile(np.array(values, dtype=np.uint16), (32, 4))).save(png)
    assert Image.open(png).mode == "I;16"
    d = data.load("imagenet10", root=folder)
    img = d.train_x[1].numpy()  # sorted after 0000.jpg
    assert (img == img[..., :1]).all()  # gray
    assert img[0, :8, 0].tolist() == [0, 0, 1, 1, 128, 156, 254, 255]  # round(v / 257)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "1", "I"])
def test_other_modes_become_8bit_rgb(mode):
    rng = np.random.default_rng(0)
    src = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert(mode)
    out = decode.to_rgb8(src)
    assert out.mode == "RGB" and out.size == (8, 8)
    if mode == "I":  # 32-bit int treated as 16-bit gray: 0..255 values are dark, not saturated
        assert np.asarray(out).max() <= 1
    else:  # alpha dropped, as torchvision's ImageFolder loader
        assert np.array_equal(np.asarray(out), np.asarray(src.convert("RGBA").convert("RGB")))


def test_mixed_sizes_need_a_target_size(digits, tmp_path):
    folder = _tree(digits, tmp_path / "inet", test_name="val", size=64)
    (folder / "val" / "cat" / "0001.jpg").write_bytes(_jpeg(digits, 0, size=48))
    with pytest.raises(data.MixedImageSizes, match=r"'train/airplane/0000.jpg' is 64x64 but "
                                                   r"'val/cat/0001.jpg' is 48x48.*image_size="):
        data.load("imagenet10", root=folder)
    assert data.load("imagenet10", root=folder, image_size=48).test_x.shape == (6, 48, 48, 3)


# ----------------------------------------------------------------------------- bad inputs

def test_imagenet_class_folders_must_match(digits, tmp_path):
    folder = _tree(digits, tmp_path / "inet", test_name="val")
    (folder / "val" / "bird").rename(folder / "val" / "dog")
    with pytest.raises(data.LayoutError, match=r"class folders differ.*only in train \['bird'\], "
                                               r"only in val\|validation \['dog'\]"):
        data.load("imagenet10", root=folder)


def test_empty_archive_says_what_is_missing(tmp_path):
    empty = tmp_path / "empty.tar.xz"
    tarfile.open(empty, "w:xz").close()
    with pytest.raises(data.LayoutError, match=r"empty.tar.xz has no images under train/<class>/"):
        data.load("cifar10", root=empty)


def test_non_tar_files_are_named(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(data.DataNotFound, match=r"notes.txt is a file but not a tar archive"):
        data.load("cifar10", root=notes)
    fake = tmp_path / "fake.tar"
    fake.write_text("hello, not a tar file")
    with pytest.raises(data.CorruptArchive, match=r"cannot open archive .*fake.tar"):
        data.load("cifar10", root=fake)


def test_truncated_archive_is_named(digits, tmp_path):
    whole = _archive(_tree(digits, tmp_path / "tree"), tmp_path / "whole.tar.xz").read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(data.CorruptArchive, match=r"cannot open archive .*cut.tar.xz.*truncated"):
        data.load("cifar10", root=cut)


def test_holdout_is_a_seeded_development_split(digits):
    dev = digits.holdout(300, seed=0)
    assert len(dev.train_y) == len(digits.train_y) - 300 and len(dev.test_y) == 300
    assert dev.fingerprint != digits.fingerprint and dev.holdout(10).fingerprint != dev.fingerprint
    # every held-out image is a training image, none is a real test image, and train ∩ held = ∅
    rows = {bytes(x.numpy().tobytes()) for x in digits.train_x}
    held = [bytes(x.numpy().tobytes()) for x in dev.test_x]
    kept = {bytes(x.numpy().tobytes()) for x in dev.train_x}
    assert all(h in rows for h in held) and not kept & set(held)
    assert torch.equal(digits.holdout(300, seed=0).test_x, dev.test_x)          # seeded
    assert not torch.equal(digits.holdout(300, seed=1).test_x, dev.test_x)
    for bad in (0, len(digits.train_y)):
        with pytest.raises(ValueError, match="dev_holdout"):
            digits.holdout(bad)


# ----------------------------------------------------------------------------- bad inputs (issue 21)

def test_a_fractional_holdout_is_one_clear_error(digits):
    with pytest.raises(TypeError, match=r"whole number of images.*300.5.*dev_holdout"):
        digits.holdout(300.5)


def test_load_expands_the_home_folder(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _tree(digits, tmp_path / "tree")
    loaded = data.load("cifar10", root="~/tree")
    assert loaded.classes == CLASSES and len(loaded.train_y) == 12


def test_an_empty_class_folder_is_called_empty_not_missing(digits, tmp_path):
    folder = _tree(digits, tmp_path / "tree")
    for f in (folder / "train" / "cat").iterdir():
        f.unlink()
    with pytest.raises(data.LayoutError, match=r"train/cat.* is empty"):
        data.load("cifar10", root=folder)


def test_a_root_for_the_embedded_digits_is_refused(tmp_path):
    with pytest.raises(data.DataError, match="embedded.*no root"):
        data.load("digits", root=tmp_path)


@pytest.mark.parametrize("field, value, says", [
    ("train_x", lambda d: d.train_x.float(), "train_x must be uint8"),
    ("test_x", lambda d: torch.full(d.test_x.shape, float("nan")), "test_x must be uint8"),
    ("train_x", lambda d: d.train_x.permute(0, 3, 1, 2).contiguous(), r"\(N, H, W, 3\)"),
    ("train_y", lambda d: torch.where(torch.arange(len(d.train_y)) == 7, 10, d.train_y), r"train label 10.*index 7.*0\.\.9"),
    ("test_y", lambda d: torch.where(torch.arange(len(d.test_y)) == 3, -1, d.test_y), r"test label -1.*index 3"),
    ("train_y", lambda d: d.train_y.float(), "train_y must be int64"),
])
def test_bad_images_or_labels_are_refused_where_data_enters(digits, field, value, says):
    """Float/NaN pixels or out-of-range labels: one clear error at ImageData, not a metric blaming
    the weights or δ, a label scored as a miss, or a raw index error in the solver or trainer."""
    import dataclasses
    with pytest.raises(data.DataError, match=says):
        dataclasses.replace(digits, **{field: value(digits)})


def test_float_images_passed_for_uint8_ones_are_named(digits, original):
    from fvlib import metrics
    with pytest.raises(TypeError, match=r"uint8.*float32"):
        metrics.accuracy(original, digits.test_x.float() / 255, digits.test_y)


def test_an_edit_whose_mtime_was_restored_is_decoded_again(digits, tmp_path):
    """cp -p / rsync -t / touch -d put the old mtime back, but not the ctime (the kernel sets it)."""
    folder = _tree(digits, tmp_path / "tree")
    bmp = folder / "train" / "airplane" / "0000.jpg"  # BMP bytes: a fixed size whatever the pixels
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bmp, format="BMP")
    assert data.load("cifar10", root=folder).train_x[0].max() == 0
    before = bmp.stat()
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(bmp, format="BMP")
    os.utime(bmp, ns=(before.st_atime_ns, before.st_mtime_ns))  # the edit's mtime put back
    after = bmp.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert data.load("cifar10", root=folder).train_x[0].min() == 255
