"""Decode speed: seconds to turn the dataset's source (the offline JPEG archive) into device tensors.

python benchmarks/decode_speed.py [PROFILE] [--keep]   (default: quick on CUDA, smoke elsewhere)

Loads once into a fresh temporary cache (FVLIB_CACHE pointed at a new folder: archive sha256 +
JPEG decode + cache write + copy to the device), then again from that cache (a warm start).
--keep copies the freshly decoded cache files into the cache that was active before, so later
scripts of a session do not decode again. The `smoke` profile's digits are not cached by fvlib:
both loads just time scikit-learn's loader.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402

ARCHIVES = ("data/offline/cifar10-jpeg.tar.xz", "data/cifar10-jpeg.tar.xz",
            "../shared/data/cifar10-jpeg.tar.xz")


def archive_info() -> dict:
    """Which of the usual CIFAR-10 archive places exist, with sizes (the first is the one used)."""
    return {p: (common.ROOT / p).stat().st_size for p in ARCHIVES if (common.ROOT / p).is_file()}


def active_cache() -> Path:
    """The cache folder fvlib uses now ($FVLIB_CACHE, else its default)."""
    if os.environ.get("FVLIB_CACHE"):
        return Path(os.environ["FVLIB_CACHE"])
    from fvlib.paths import cache_dir
    return cache_dir()


def main(argv: list[str] | None = None) -> dict:
    """Time a cold load into a fresh cache and a warm load from it."""
    p = common.parser(__doc__)
    p.add_argument("--keep", action="store_true", help="copy decoded files into the active cache")
    args = p.parse_args(argv)
    profile = common.load_profile(args.profile)
    previous = active_cache()
    with common.scratch_cache("fvbench-decode-") as fresh:
        with common.timer(torch.device("cpu")) as cold:
            data = common.config.load_data(profile)
            common.sync(data.device)
        device = data.device
        del data
        with common.timer(torch.device("cpu")) as warm:
            data = common.config.load_data(profile)
            common.sync(device)
        files = {f.name: f.stat().st_size for f in fresh.iterdir() if f.is_file()}
        if args.keep and files:
            previous.mkdir(parents=True, exist_ok=True)
            for name in files:
                if not (previous / name).exists():
                    shutil.copy2(fresh / name, previous / name)
    n = len(data.train_y) + len(data.test_y)
    result = {"images": n, "train_images": len(data.train_y), "test_images": len(data.test_y),
              "image_shape": list(data.image_shape), "cold_load_seconds": round(cold["seconds"], 2),
              "cold_images_per_s": round(n / cold["seconds"], 1),
              "warm_load_seconds": round(warm["seconds"], 2), "cache_files": files,
              "archives_found": archive_info() if profile.dataset == "cifar10" else {},
              "kept_into": str(previous) if args.keep else None,
              "note": ("cold = source sha256 + decode + cache write + device copy, into an empty "
                       "cache; warm = the same call once cached" if files else
                       "this dataset is not cached by fvlib: both loads run its loader")}
    path = common.write_result("decode_speed", profile, device, result)
    common.summary("decode_speed", path, profile=profile.name, images=n,
                   cold_s=result["cold_load_seconds"], warm_s=result["warm_load_seconds"],
                   device=common.device_slug(device))
    return result


if __name__ == "__main__":
    main()
