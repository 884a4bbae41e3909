"""Check the offline archives beside the project against the counts in data/README.md.

    python tools/check_offline_data.py [FOLDER]      (default: ../shared/data)

Decodes each archive through fvlib (so into fvlib's cache, as a study would) and exits 1 naming
every count or class list that differs, 2 if an archive is missing. Not a unit test: the archives
live outside the repository, so CI has none to check; run it once on a machine that has them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from fvlib import data  # noqa: E402
from fvlib.paths import shared_data_dir  # noqa: E402

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def problems(folder: Path) -> list[str]:
    """Every difference between the archives in folder and data/README.md's counts."""
    out = []
    c = data.load("cifar10", root=folder / "cifar10-jpeg.tar.xz")
    if (len(c.train_y), len(c.test_y)) != (50_000, 10_000):
        out.append(f"cifar10: {len(c.train_y)} / {len(c.test_y)} images, expected 50,000 / 10,000")
    if c.classes != CIFAR10_CLASSES or torch.bincount(c.train_y).tolist() != [5000] * 10:
        out.append(f"cifar10: classes {c.classes}, per class {torch.bincount(c.train_y).tolist()}")
    i = data.load("imagenet10", root=folder / "imagenette-112.tar.xz")
    if (len(i.train_y), len(i.test_y)) != (9_469, 3_925):
        out.append(f"imagenet10: {len(i.train_y)} / {len(i.test_y)} images, expected 9,469 / 3,925")
    if i.train_x.shape[1:] != (112, 112, 3) or i.classes[0] != "n01440764":
        out.append(f"imagenet10: images {tuple(i.train_x.shape[1:])}, first class {i.classes[0]}")
    return out


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else shared_data_dir()
    missing = [n for n in ("cifar10-jpeg.tar.xz", "imagenette-112.tar.xz") if not (folder / n).exists()]
    if missing:
        print(f"missing in {folder}: {', '.join(missing)}", file=sys.stderr)
        return 2
    found = problems(folder)
    print("\n".join(found) if found else f"offline archives in {folder} match data/README.md")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
