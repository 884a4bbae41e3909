"""Datasets as device-resident uint8 tensors: one representation for digits, CIFAR-10, ImageNet-10.

A split is images (N, H, W, 3) uint8 + labels (N,) int64 + class names. Three sources:
`digits` (scikit-learn's bundled 8x8 digits, the embedded default), `cifar10` (torchvision, an
image-folder tree or a .tar/.tar.xz archive) and `imagenet10` (an image-folder tree or archive with
train/ and val/). Decoded arrays are cached in data/cache/ keyed by the source's sha256.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from fvlib.cache import cached_tensors, config_hash, file_sha256
from fvlib.paths import data_dir, shared_data_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """Unusable data input; the message names the path and the fix."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static facts of one dataset: normalisation (reference notes §1.3) and split folder names."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    test_folders: tuple[str, ...]
    default_size: int


DATASETS: dict[str, DatasetSpec] = {
    # digits: mean/std of the upsampled training images (computed once, rounded).
    "digits": DatasetSpec((0.3052,) * 3, (0.3236,) * 3, (), 32),
    "cifar10": DatasetSpec((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), ("test",), 32),
    "imagenet10": DatasetSpec((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ("val", "validation"), 224),
}


@dataclasses.dataclass
class ImageData:
    """Train/test images (N, H, W, 3) uint8 and labels (N,) int64 on one device, plus class names."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    fingerprint: str  # sha256-derived key of the source and decode settings

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W): the shape of one model input and of a forget vector."""
        return (3, int(self.train_x.shape[1]), int(self.train_x.shape[2]))

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.name]

    def to(self, device: torch.device | str) -> "ImageData":
        """Copy of this dataset with every tensor on device."""
        move = {f: getattr(self, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")}
        return dataclasses.replace(self, **move)

    def subset(self, n_train: int, n_test: int, seed: int = 0) -> "ImageData":
        """A class-balanced-in-expectation random subset (for quick checks); keeps class order."""
        g = torch.Generator().manual_seed(seed)
        tr = torch.randperm(len(self.train_y), generator=g)[:n_train].sort().values.to(self.device)
        te = torch.randperm(len(self.test_y), generator=g)[:n_test].sort().values.to(self.device)
        return dataclasses.replace(self, train_x=self.train_x[tr], train_y=self.train_y[tr],
                                   test_x=self.test_x[te], test_y=self.test_y[te],
                                   fingerprint=f"{self.fingerprint}-sub{n_train}-{n_test}-{seed}")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]; the permute keeps channels_last strides."""
    return x.permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------- public entry point

def load(name: str, root: str | Path | None = None, image_size: int | None = None,
         resize: int | None = None, device: torch.device | str = "cpu",
         download: bool = False) -> ImageData:
    """Load a dataset by name onto device.

    root: an archive, an image-folder tree, or (cifar10) a torchvision folder; None searches data/
    and ../shared/data. image_size: square side of the stored images (default per dataset; the
    offline Imagenette archive is 112 px). resize: square-resize to this side first, then
    centre-crop to image_size (the paper's ImageNet test transform is resize 256 -> crop 224).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "digits":
        arrays, classes, fp = _load_digits()
        return _assemble(name, arrays, classes, fp, device)
    size = image_size or (None if name == "imagenet10" else DATASETS[name].default_size)
    source = _resolve_source(name, root, download)
    fp = config_hash(name, _source_fingerprint(source), size, resize)
    tensors, meta, _ = cached_tensors(f"data-{name}", fp, lambda: _decode(name, source, size, resize))
    arrays = (tensors["train_x"], tensors["train_y"], tensors["test_x"], tensors["test_y"])
    return _assemble(name, arrays, meta["classes"], fp, device)


def _assemble(name: str, arrays: tuple, classes: list[str], fp: str, device) -> ImageData:
    tx, ty, vx, vy = (torch.as_tensor(a) for a in arrays)
    data = ImageData(name, tx.to(torch.uint8), ty.long(), vx.to(torch.uint8), vy.long(),
                     list(classes), fp)
    return data.to(device)


# ----------------------------------------------------------------------------- digits (embedded)

def _load_digits() -> tuple[tuple, list[str], str]:
    """scikit-learn's 1,797 8x8 digits -> 32x32x3 uint8, deterministic stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    img = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N,1,8,8) in [0,1]
    up = torch.nn.functional.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)
    x = (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).repeat(1, 1, 1, 3)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y.numpy(),
                                      random_state=0)
    idx_tr, idx_te = np.sort(idx_tr), np.sort(idx_te)
    arrays = (x[idx_tr], y[idx_tr], x[idx_te], y[idx_te])
    fp = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]
    return arrays, [str(d) for d in range(10)], fp


# ----------------------------------------------------------------------------- source discovery

def _candidates(name: str) -> list[Path]:
    """Places searched when no root is given, in order."""
    d, s = data_dir(), shared_data_dir()
    if name == "cifar10":
        return [d / "cifar10", d / "cifar-10-batches-py", d / "cifar10-jpeg.tar.xz",
                d / "offline" / "cifar10-jpeg.tar.xz", s / "cifar10-jpeg.tar.xz"]
    return [d / "imagenet10", d / "imagenette-112.tar.xz", d / "offline" / "imagenette-112.tar.xz",
            s / "imagenette-112.tar.xz"]


def _usable(name: str, path: Path) -> bool:
    if path.is_file():
        return path.name.endswith((".tar", ".tar.xz", ".tar.gz", ".tgz"))
    if not path.is_dir():
        return False
    if name == "cifar10" and (path.name == "cifar-10-batches-py" or (path / "cifar-10-batches-py").is_dir()):
        return True
    return (path / "train").is_dir() and any((path / t).is_dir() for t in DATASETS[name].test_folders)


def _resolve_source(name: str, root, download: bool) -> Path:
    """Find the dataset's source or raise one error naming where we looked and the three fixes."""
    if download and name == "cifar10":
        import torchvision
        target = Path(root) if root else data_dir()
        for train in (True, False):
            torchvision.datasets.CIFAR10(str(target), train=train, download=True)
        return target / "cifar-10-batches-py"
    looked = [Path(root)] if root is not None else _candidates(name)
    for path in looked:
        if path.exists() and _usable(name, path):
            return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    where = "\n  ".join(str(p) for p in looked)
    split = "train/<class>/* and test/<class>/*" if name == "cifar10" else "train/<wnid>/* and val/<wnid>/*"
    raise DataError(
        f"no usable {name} data; looked in:\n  {where}\nGet data one of three ways: "
        f"(1) cifar10 only: load('cifar10', download=True) when online (torchvision); "
        f"(2) an image-folder tree with {split}, passed as root or placed at {data_dir() / name}; "
        f"(3) the offline archive (../shared/data/*.tar.xz), passed as root or copied into {data_dir()}.")


def _source_fingerprint(source: Path) -> str:
    """sha256 of an archive's bytes; for a folder, of its sorted file list with sizes."""
    if source.is_file():
        return file_sha256(source)
    h = hashlib.sha256()
    for p in sorted(source.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(source)}:{p.stat().st_size}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- decoding

def _decode(name: str, source: Path, size: int | None, resize: int | None):
    """Decode a source into uint8 arrays -> ({train_x, train_y, test_x, test_y}, {classes})."""
    if source.is_dir() and source.name == "cifar-10-batches-py":
        return _decode_torchvision(source.parent)
    entries = _archive_entries(source) if source.is_file() else _folder_entries(source)
    splits = _group(name, source, entries)
    classes = sorted(splits["train"])
    out = {}
    for key, split in (("train", "train"), ("test", "test")):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for member, read in splits[split][cls]:
                xs.append(_decode_image(read(), member, source, size, resize))
                ys.append(label)
        out[f"{key}_x"] = torch.from_numpy(np.stack(xs))
        out[f"{key}_y"] = torch.tensor(ys, dtype=torch.int64)
    return out, {"classes": classes, "source": str(source)}


def _decode_torchvision(root: Path):
    import torchvision
    tr = torchvision.datasets.CIFAR10(str(root), train=True, download=False)
    te = torchvision.datasets.CIFAR10(str(root), train=False, download=False)
    out = {"train_x": torch.from_numpy(tr.data), "train_y": torch.tensor(tr.targets),
           "test_x": torch.from_numpy(te.data), "test_y": torch.tensor(te.targets)}
    return out, {"classes": list(tr.classes), "source": str(root)}


def _archive_entries(path: Path) -> Iterable[tuple[str, callable]]:
    """(member name, read-bytes thunk) for every image file in a tar archive (read fully once)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            blobs = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()
                     if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot open archive {path}: {err}. The file is corrupt or not a tar "
                        f"archive; re-copy it (e.g. from ../shared/data) or pass an image folder.") from err
    return [(name, (lambda b=blob: b)) for name, blob in blobs]


def _folder_entries(path: Path) -> Iterable[tuple[str, callable]]:
    return [(str(p.relative_to(path)), (lambda p=p: p.read_bytes())) for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _group(name: str, source: Path, entries) -> dict[str, dict[str, list]]:
    """Group entries into {'train'|'test': {class: [(member, read), ...]}} sorted by member name."""
    test_names = DATASETS[name].test_folders
    splits: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for member, read in entries:
        parts = Path(member).parts
        if len(parts) < 3:
            continue
        split, cls = parts[-3], parts[-2]
        key = "train" if split == "train" else "test" if split in test_names else None
        if key:
            splits[key].setdefault(cls, []).append((member, read))
    if not splits["train"] or not splits["test"]:
        raise DataError(f"{source} has no train/<class>/ and {'|'.join(test_names)}/<class>/ images; "
                        "check the layout (see data/README.md).")
    if set(splits["train"]) != set(splits["test"]):
        only_tr = sorted(set(splits["train"]) - set(splits["test"]))
        only_te = sorted(set(splits["test"]) - set(splits["train"]))
        raise DataError(f"class folders differ between splits in {source}: only in train {only_tr}, "
                        f"only in test {only_te}; every class needs a folder in both splits.")
    for split in splits.values():
        for members in split.values():
            members.sort(key=lambda e: e[0])
    return splits


def _decode_image(blob: bytes, member: str, source: Path, size: int | None,
                  resize: int | None) -> np.ndarray:
    """bytes -> (H, W, 3) uint8; square resize (aspect not kept, as the paper) then centre crop."""
    from PIL import Image
    try:
        img = Image.open(io.BytesIO(blob)).convert("RGB")
    except Exception as err:  # PIL raises many types for broken files
        raise DataError(f"cannot decode image {member!r} in {source}: {err}. "
                        "Remove or replace that file and load again.") from err
    if resize:
        img = img.resize((resize, resize), Image.BICUBIC)
    if size and resize and resize > size:
        off = (resize - size) // 2
        img = img.crop((off, off, off + size, off + size))
    elif size and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)
