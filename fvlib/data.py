"""Datasets as device-resident uint8 tensors: one representation for digits, CIFAR-10, ImageNet-10.

A split is images (N, H, W, 3) uint8 + labels (N,) int64 + class names. Three named sources:
`digits` (scikit-learn's bundled 8x8 digits, the embedded default), `cifar10` (torchvision, an
image-folder tree or a .tar/.tar.xz archive) and `imagenet10` (an image-folder tree or archive with
train/ and val/), each with its registered DatasetSpec; and `load_folder`: any image folder or
archive with train/<class>/ and test/<class>/, whose spec (mean/std) is computed from its images.
Decoded arrays are cached in data/cache/ keyed by the source's fingerprint (an archive's sha256; a
folder's file names, sizes, mtimes and ctimes) and the decode settings. Decoding itself
(Pillow, process pool, archive streaming) lives in fvlib.decode.
"""
from __future__ import annotations

import dataclasses
import hashlib
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from fvlib import decode
from fvlib.cache import cached_tensors, config_hash, file_sha256
from fvlib.paths import data_dir, shared_data_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ARCHIVE_SUFFIXES = (".tar", ".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")
# Part of the cache key: bump when decoding changes the pixels of an unchanged source
# (2: 16-bit PNGs scaled instead of clipped, images in class sub-folders kept).
DECODE_VERSION = 2


class DataError(ValueError):
    """Unusable data input; the message names the path, the problem and the fix."""


class DataNotFound(DataError):
    """No usable source at the given root or in the default places."""


class CorruptArchive(DataError):
    """A .tar/.tar.xz/... file that cannot be read to its end."""


class LayoutError(DataError):
    """Images missing from train/<class>/ or test/<class>/, or class folders that differ."""


class UndecodableImage(DataError):
    """One image file that Pillow cannot decode."""


class MixedImageSizes(DataError):
    """Images of different sizes and no image_size to bring them to one."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Facts of one dataset: normalisation (docs/protocol.md P1.3), split folders, training view."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    test_folders: tuple[str, ...]
    default_size: int
    augment: str  # default training augmentation, a name in fvlib.augment (P1.1-P1.2)


DATASETS: dict[str, DatasetSpec] = {
    # digits: mean/std of the upsampled training images (computed once, rounded).
    "digits": DatasetSpec((0.3052,) * 3, (0.3236,) * 3, (), 32, "translate"),  # no flip: digits are not symmetric
    "cifar10": DatasetSpec((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), ("test",), 32, "crop_flip"),
    "imagenet10": DatasetSpec((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ("val", "validation"), 224,
                              "resized_crop_flip"),
}
# An image folder of your own (load_folder): test split under test/ (or val/), spec computed.
FOLDER_TESTS = ("test", "val", "validation")


@dataclasses.dataclass
class ImageData:
    """Train/test images (N, H, W, 3) uint8 and labels (N,) int64 on one device, class names, and
    the dataset's spec (normalisation, training view)."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    fingerprint: str  # key of the source's fingerprint and the decode settings
    spec: DatasetSpec | None = None  # None: the registered DATASETS[name] (load_folder computes one)
    train_files: tuple[str, ...] | None = None  # source name of each training image, when known

    def __post_init__(self) -> None:
        if self.spec is None:
            if self.name not in DATASETS:
                raise DataError(f"dataset {self.name!r} is not registered ({', '.join(DATASETS)}); "
                                "pass its DatasetSpec as spec=... (load_folder computes one).")
            self.spec = DATASETS[self.name]
        check_arrays(self)

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
                                   train_files=self._files(tr),
                                   fingerprint=f"{self.fingerprint}-sub{n_train}-{n_test}-{seed}")

    def holdout(self, n: int, seed: int = 0) -> "ImageData":
        """A development split: n seeded training images become the test set, the rest the
        training set; the real test set is dropped, so choices made on it never see test images."""
        total = len(self.train_y)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"holdout needs a whole number of images, got {type(n).__name__} {n!r}; "
                            "set the profile's dev_holdout to an int")
        if not 0 < n < total:
            raise ValueError(f"holdout needs 0 < n < {total} (the training images of {self.name}), got {n}; "
                             f"set the profile's dev_holdout accordingly")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(total, generator=g)
        held, kept = perm[:n].sort().values.to(self.device), perm[n:].sort().values.to(self.device)
        return dataclasses.replace(self, train_x=self.train_x[kept], train_y=self.train_y[kept],
                                   test_x=self.train_x[held], test_y=self.train_y[held],
                                   train_files=self._files(kept),
                                   fingerprint=f"{self.fingerprint}-holdout{n}-{seed}")

    def _files(self, idx: torch.Tensor) -> tuple[str, ...] | None:
        """The training file names at indices idx (None when the names are not known)."""
        return None if self.train_files is None else tuple(self.train_files[i] for i in idx.tolist())


def to_float(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]; the permute keeps channels_last strides."""
    if x.dtype != torch.uint8:  # floats here would be scaled by 1/255 again, NaNs blamed on the model
        raise TypeError(f"images must be uint8 (N, H, W, 3) in 0..255 as ImageData holds them, got "
                        f"{str(x.dtype).replace('torch.', '')} {tuple(x.shape)}; pass the data's own tensors, "
                        "or convert [0, 1] floats with (x * 255).round().to(torch.uint8)")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def _label_range(name: str, y: torch.Tensor, num_classes: int) -> None:
    """Raise DataError naming the first label of y outside 0..num_classes-1."""
    bad = ((y < 0) | (y >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{name} label {int(y[i])} at index {i} is outside 0..{num_classes - 1} "
                        f"({num_classes} classes); fix the labels, or the class list, before building the data")


def check_arrays(data: "ImageData") -> None:
    """Where data enters: images (N, H, W, 3) uint8 (so no NaN or float pixels) and int64 labels
    in 0..num_classes-1; one DataError naming the field and the fix, instead of a metric blaming
    θ_o or δ, a label scored as a miss, or an index error in the solver or trainer."""
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
            raise DataError(f"{split}_x must be uint8 images (N, H, W, 3) in 0..255, got "
                            f"{str(x.dtype).replace('torch.', '')} {tuple(x.shape)}; convert [0, 1] floats "
                            "with (x * 255).round().to(torch.uint8) and channels last (x.permute(0, 2, 3, 1))")
        if y.dtype != torch.int64 or y.dim() != 1:
            raise DataError(f"{split}_y must be int64 class indices (N,), got "
                            f"{str(y.dtype).replace('torch.', '')} {tuple(y.shape)}; convert with y.long()")
        _label_range(split, y, len(data.classes))


def batch_indices(idx: torch.Tensor, batch_size: int, g: torch.Generator,
                  shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Yield index batches (on idx's device) over idx, shuffled with g; the last batch may be short."""
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=g, device=g.device).to(idx.device)]
    yield from idx.split(batch_size)


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
        if root is not None:
            raise DataError(f"digits are embedded (scikit-learn's bundled set) and take no root, got "
                            f"{root}; drop root, or load 'cifar10' / 'imagenet10' from it")
        arrays, classes, fp = _load_digits()
        return _assemble(name, arrays, classes, fp, device)
    size = image_size or (None if name == "imagenet10" else DATASETS[name].default_size)
    root = Path(root).expanduser() if root is not None else None  # "~/data" as a shell would read it
    source = _resolve_source(name, root, download)
    fp = config_hash(name, _source_fingerprint(source), size, resize, DECODE_VERSION)
    tests = DATASETS[name].test_folders
    tensors, meta, _ = cached_tensors(f"data-{name}", fp, lambda: _decode(source, tests, size, resize))
    arrays = (tensors["train_x"], tensors["train_y"], tensors["test_x"], tensors["test_y"])
    return _assemble(name, arrays, meta["classes"], fp, device, files=meta.get("train_files"))


def load_folder(root: str | Path, image_size: int | None = None, resize: int | None = None,
                mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                augment: str | None = None, device: torch.device | str = "cpu") -> ImageData:
    """Any image folder or archive with train/<class>/* and test/<class>/* (any classes, any size).

    mean/std: the normalisation of models trained here (default: computed from the training
    images). augment: their training view (default crop_flip up to 64 px, else resized_crop_flip).
    The dataset is named after the folder; file names are kept for instance-wise forget sets.
    """
    from fvlib.augment import AUGMENTATIONS  # here: fvlib.augment imports this module
    if augment is not None and augment not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation {augment!r}; valid names: {', '.join(AUGMENTATIONS)}")
    source = Path(root).expanduser()
    if not (source.exists() and (source.is_dir() or _usable("folder", source))):
        raise DataNotFound(f"{root} is neither an image folder nor a tar archive; pass a folder (or "
                           f"archive) holding train/<class>/*.jpg and test/<class>/*.jpg.")
    key = config_hash("folder", _source_fingerprint(source), image_size, resize, DECODE_VERSION)
    tensors, meta, _ = cached_tensors("data-folder", key,
                                      lambda: _decode(source, FOLDER_TESTS, image_size, resize))
    tx = tensors["train_x"]
    stats = channel_stats(tx) if mean is None or std is None else (tuple(mean), tuple(std))
    side = int(tx.shape[1])
    spec = DatasetSpec(stats[0], stats[1], FOLDER_TESTS, side,
                       augment or ("crop_flip" if side <= 64 else "resized_crop_flip"))
    name = source.name.split(".")[0] or "folder"
    arrays = (tx, tensors["train_y"], tensors["test_x"], tensors["test_y"])
    # the spec joins the identity: models trained with other mean/std must not share a cache key
    return _assemble(name, arrays, meta["classes"], config_hash(key, spec), device, spec,
                     meta["train_files"])


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (rounded to 4 places) of uint8 images x (N, H, W, 3), in [0, 1]."""
    total = torch.zeros(3, dtype=torch.float64)
    square = torch.zeros(3, dtype=torch.float64)
    for part in x.split(chunk):
        v = part.reshape(-1, 3).double().div_(255.0)
        total += v.sum(0)
        square += (v * v).sum(0)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / n
    std = (square / n - mean * mean).clamp(min=1e-12).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _assemble(name: str, arrays: tuple, classes: list[str], fp: str, device,
              spec: DatasetSpec | None = None, files: list[str] | None = None) -> ImageData:
    tx, ty, vx, vy = (torch.as_tensor(a) for a in arrays)
    data = ImageData(name, tx.to(torch.uint8), ty.long(), vx.to(torch.uint8), vy.long(),
                     list(classes), fp, spec, tuple(files) if files is not None else None)
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
        return path.name.lower().endswith(ARCHIVE_SUFFIXES)
    if not path.is_dir():
        return False
    if name == "cifar10" and (path.name == "cifar-10-batches-py" or (path / "cifar-10-batches-py").is_dir()):
        return True
    tests = FOLDER_TESTS if name == "folder" else DATASETS[name].test_folders
    return (path / "train").is_dir() and any((path / t).is_dir() for t in tests)


def _resolve_source(name: str, root, download: bool) -> Path:
    """Find the dataset's source or raise one error naming where we looked and the three fixes."""
    if download and name == "cifar10":
        import torchvision
        target = Path(root) if root else data_dir()
        for train in (True, False):
            torchvision.datasets.CIFAR10(str(target), train=train, download=True)
        return target / "cifar-10-batches-py"
    if root is not None and Path(root).is_file() and not _usable(name, Path(root)):
        raise DataNotFound(f"root {root} is a file but not a tar archive ({', '.join(ARCHIVE_SUFFIXES)}); "
                           "pass the archive, or the folder that holds train/ and the test split.")
    looked = [Path(root)] if root is not None else _candidates(name)
    for path in looked:
        if path.exists() and _usable(name, path):
            return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    where = "\n  ".join(str(p) for p in looked)
    split = "train/<class>/* and test/<class>/*" if name == "cifar10" else "train/<wnid>/* and val/<wnid>/*"
    raise DataNotFound(
        f"no usable {name} data; looked in:\n  {where}\nGet data one of three ways: "
        f"(1) cifar10 only: load('cifar10', download=True) when online (torchvision); "
        f"(2) an image-folder tree with {split}, passed as root or placed at {data_dir() / name}; "
        f"(3) the offline archive (../shared/data/*.tar.xz), passed as root or copied into {data_dir()}.")


def _source_fingerprint(source: Path) -> str:
    """sha256 of an archive's bytes; for a folder, of every file's relative name, size, mtime, ctime.

    mtime_ns catches an image edited in place at the same size, without reading every file; ctime_ns
    (set by the kernel, never restored by cp -p, rsync -t or touch) catches one whose mtime was put
    back. Hashing the bytes instead costs 4.1-4.4 s vs 2.6-3.0 s for the 60,000-image CIFAR-10
    folder (2-core CPU, warm page cache, loaded machine), on every load.
    """
    if source.is_file():
        return file_sha256(source)
    h = hashlib.sha256()
    for p in sorted(source.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(source)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- decoding

def _decode(source: Path, tests: tuple[str, ...], size: int | None, resize: int | None):
    """Decode a source into uint8 arrays -> ({train_x (N,H,W,3), train_y (N,), test_...},
    {classes, source, train_files}); tests names the test-split folders."""
    if source.is_dir() and source.name == "cifar-10-batches-py":
        return _decode_torchvision(source.parent)
    entries = _archive_entries(source) if source.is_file() else _folder_entries(source)
    wanted = ((m, payload) for m, payload in entries if _split_class(m, tests))
    try:  # a pool decodes while the archive is still being read
        images = decode.decode_images(wanted, size, resize)
    except decode.ImageDecodeError as err:
        raise UndecodableImage(f"cannot decode image {err.member!r} in {source}: {err.reason}. "
                               "Remove or replace that file and load again.") from None
    splits = _group(source, images, tests)
    classes = sorted(splits["train"])
    order = {key: [(m, label) for label, c in enumerate(classes) for m in splits[key][c]]
             for key in ("train", "test")}
    _check_one_size(source, images, [m for key in order for m, _ in order[key]])
    out = {}
    for key, members in order.items():
        out[f"{key}_x"] = torch.from_numpy(np.stack([images[m] for m, _ in members]))
        out[f"{key}_y"] = torch.tensor([label for _, label in members], dtype=torch.int64)
    return out, {"classes": classes, "source": str(source),
                 "train_files": [m for m, _ in order["train"]]}


def _decode_torchvision(root: Path):
    import torchvision
    tr = torchvision.datasets.CIFAR10(str(root), train=True, download=False)
    te = torchvision.datasets.CIFAR10(str(root), train=False, download=False)
    out = {"train_x": torch.from_numpy(tr.data), "train_y": torch.tensor(tr.targets),
           "test_x": torch.from_numpy(te.data), "test_y": torch.tensor(te.targets)}
    return out, {"classes": list(tr.classes), "source": str(root)}


def _archive_entries(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every image file in a tar archive, read in one streaming pass."""
    try:
        for member, blob in decode.tar_files(path):
            if member.lower().endswith(IMAGE_SUFFIXES):
                yield member, blob
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        raise CorruptArchive(f"cannot open archive {path}: {type(err).__name__}: {err}. The file is "
                             "corrupt, truncated or not a tar archive; re-copy it (e.g. from "
                             "../shared/data) or pass an image folder.") from err


def _folder_entries(path: Path) -> list[tuple[str, Path]]:
    """(relative posix name, file) of every image file under path; workers read the files themselves."""
    return [(p.relative_to(path).as_posix(), p) for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _split_class(member: str, test_names: tuple[str, ...]) -> tuple[str, str] | None:
    """('train'|'test', class) of a member, or None when it is outside both splits.

    As torchvision's ImageFolder: the class is the first folder below train/ (or a test folder), and
    every image anywhere below it belongs to it. Leading folders (cifar10/train/...) are allowed;
    hidden files and folders (.ipynb_checkpoints, macOS ._* files) are not images of the data set.
    """
    parts = [p for p in member.split("/") if p not in ("", ".")]  # not Path(): 0.4 s per 60k names
    if any(p.startswith(".") and p != ".." for p in parts):
        return None
    for i, part in enumerate(parts[:-2]):  # a split folder needs a class folder and a file below
        if part == "train" or part in test_names:
            return ("train" if part == "train" else "test"), parts[i + 1]
    return None


def _group(source: Path, images: dict[str, np.ndarray], test_names: tuple[str, ...]
           ) -> dict[str, dict[str, list[str]]]:
    """Group member names into {'train'|'test': {class: [member, ...]}}, sorted by member name."""
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for member in sorted(images):
        split, cls = _split_class(member, test_names)
        splits[split].setdefault(cls, []).append(member)
    tests = "|".join(test_names)
    if not splits["train"] or not splits["test"]:
        raise LayoutError(f"{source} has no images under train/<class>/ and {tests}/<class>/ (empty, "
                          f"or another layout); arrange it as train/<class>/*.jpg and "
                          f"{test_names[0]}/<class>/*.jpg (see data/README.md).")
    if set(splits["train"]) != set(splits["test"]):
        _no_empty_class_folders(source, splits, test_names)
        only_tr = sorted(set(splits["train"]) - set(splits["test"]))
        only_te = sorted(set(splits["test"]) - set(splits["train"]))
        raise LayoutError(f"class folders differ between splits in {source}: only in train {only_tr}, "
                          f"only in {tests} {only_te}; every class needs a folder in both splits.")
    return splits


def _no_empty_class_folders(source: Path, splits: dict[str, dict[str, list[str]]],
                            test_names: tuple[str, ...]) -> None:
    """Raise LayoutError for a class folder that exists in a folder source but holds no image."""
    if not source.is_dir():
        return
    for split, other in (("train", "test"), ("test", "train")):
        names = ("train",) if split == "train" else test_names
        for cls in sorted(set(splits[other]) - set(splits[split])):
            member = splits[other][cls][0].split("/")
            top = member[:next(i for i, p in enumerate(member) if p in ("train", *test_names))]
            empty = [source.joinpath(*top, n, cls) for n in names if source.joinpath(*top, n, cls).is_dir()]
            if empty:
                raise LayoutError(f"class folder {empty[0]} is empty (no {', '.join(IMAGE_SUFFIXES)} "
                                  f"file in it); add its images, or remove the class from every split.")


def _check_one_size(source: Path, images: dict[str, np.ndarray], members: list[str]) -> None:
    """Raise MixedImageSizes naming the first two members (in output order) whose (H, W) differ."""
    first = members[0]
    shape = images[first].shape
    odd = next((m for m in members if images[m].shape != shape), None)
    if odd is not None:
        (h, w), (h2, w2) = shape[:2], images[odd].shape[:2]
        raise MixedImageSizes(
            f"images in {source} differ in size: {first!r} is {w}x{h} but {odd!r} is {w2}x{h2}; "
            f"pass a target size, e.g. image_size={min(h, w, h2, w2)} to load() or load_folder() "
            "(square resize), or resize=R with image_size=N (resize, then centre crop).")
