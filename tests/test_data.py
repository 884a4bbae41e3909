"""Loaders on small real archives and folders, the digits data, and every bad-input error."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fvlib import data
from fvlib.paths import shared_data_dir

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


def _archive(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for sub in ("train", "test", "val"):
            if (folder / sub).exists():
                tar.add(folder / sub, arcname=sub)
    return path


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


@pytest.mark.slow
@pytest.mark.skipif(not (shared_data_dir() / "cifar10-jpeg.tar.xz").exists(),
                    reason="offline archives not beside the project (../shared/data)")
def test_offline_archives_have_the_documented_counts():
    c = data.load("cifar10", root=shared_data_dir() / "cifar10-jpeg.tar.xz")
    assert (len(c.train_y), len(c.test_y)) == (50_000, 10_000)
    assert c.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"]
    assert torch.bincount(c.train_y).tolist() == [5000] * 10
    i = data.load("imagenet10", root=shared_data_dir() / "imagenette-112.tar.xz")
    assert (len(i.train_y), len(i.test_y)) == (9_469, 3_925)
    assert i.train_x.shape[1:] == (112, 112, 3) and i.classes[0] == "n01440764"
