"""Shared helpers of the benchmark scripts: arguments, result JSON, FLOP counts, timers, accuracy.

Every script writes one JSON, `<name>-<profile>-<device-slug>.json`, into benchmarks/results/ (or
into $FVBENCH_RESULTS when set: CPU smoke checks and device sessions keep git clean that way), plus
a copy into $OUT when that is set (a device run's return folder). The scripts measure fvlib with
fvlib's own pieces (data, timer, metrics, atomic writes); this module holds only what fvlib has no
use for: arguments, result files, FLOP counts and step timing. The one deliberately independent
implementation is benchmarks/authors_loop.py's reference loop (see its docstring).

Scripts import this module as `benchmarks.common` after putting the repository root on sys.path, so
they also run where fvlib is not pip-installed (the GPU machine's stock python3).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # fvlib importable without installation
    sys.path.insert(0, str(ROOT))

from fvlib import config, metrics, splits, train  # noqa: E402
from fvlib.cache import atomic_write  # noqa: E402
from fvlib.forget_vector import ForgetVector  # noqa: E402
from fvlib.provenance import provenance, to_jsonable  # noqa: E402
from fvlib.runtime import environment, timer  # noqa: E402,F401 (timer: the scripts' own, fvlib's)

STARTED = dt.datetime.now(dt.timezone.utc)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    """SIGTERM (the session driver's `timeout`) -> SystemExit, so `finally` blocks remove scratch caches."""
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)


# ----------------------------------------------------------------------------- arguments, data

def default_profile() -> str:
    """'quick' (CIFAR-10 / ResNet-18) on CUDA, 'smoke' (digits / tiny CNN) elsewhere."""
    return "quick" if torch.cuda.is_available() else "smoke"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose first positional argument is the profile name."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", nargs="?", default=None,
                   help="fvlib profile (default: quick on CUDA, smoke elsewhere)")
    return p


def load_profile(name: str | None):
    """The named profile (default: quick on CUDA, smoke elsewhere)."""
    return config.get_profile(name or default_profile())


def load(name: str | None):
    """(profile, data on its device)."""
    profile = load_profile(name)
    return profile, config.load_data(profile)


def theta_o(profile, data) -> tuple[nn.Module, dict]:
    """The profile's original model θ_o through fvlib's cache (trained on a miss) and its info."""
    return train.train_original(profile.model, data, profile.train, progress=False)


def run_study(profile, data, original: nn.Module, info: dict, scenario: str, methods, trials):
    """study.run_study for one scenario of an Experiment built from (profile, data, θ_o, info)."""
    from fvlib import study
    from fvlib.experiment import Experiment
    return study.run_study(Experiment(profile, data, original, info), scenario, methods=list(methods),
                           trials=list(trials), progress=False)


@contextlib.contextmanager
def scratch_cache(prefix: str = "fvbench-cache-") -> Iterator[Path]:
    """FVLIB_CACHE pointed at a new empty temporary folder for the block, then restored and deleted.

    Data and θ_o already in memory are unaffected; everything fvlib caches inside the block (models,
    vectors, records) is computed afresh, so its timings are real.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with environment(FVLIB_CACHE=str(tmp)):
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- results

def results_dir() -> Path:
    """$FVBENCH_RESULTS if set, else benchmarks/results/ (tracked: real measurements only)."""
    return Path(os.environ.get("FVBENCH_RESULTS") or ROOT / "benchmarks" / "results")


def device_slug(device: torch.device) -> str:
    """File-name form of the device: 'cpu', or the GPU's name, e.g. 'nvidia-h200'."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def runtime_settings(device: torch.device) -> dict:
    """Backend switches that change conv/matmul speed (TF32, cuDNN autotuning) and core counts."""
    info = {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    return info


def write_result(name: str, profile, device: torch.device, result: dict, cfg: Any = None) -> Path:
    """Atomically write one benchmark record (result + provenance + timestamps); returns its path.

    Called again as a script progresses, so a killed run still leaves its finished parts.
    """
    meta = {"benchmark": name, "profile": profile.name, "dataset": profile.dataset,
            "model": profile.model, "started_at": STARTED.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "settings": runtime_settings(device), **provenance(device, config=cfg)}
    clash = set(meta) & set(result)
    if clash:  # a result key would silently overwrite provenance (or the reverse)
        raise KeyError(f"result keys {sorted(clash)} collide with the record's provenance keys")
    rec = {**meta, **result}
    if os.environ.get("FVBENCH_GIT_SHA"):
        # the device's copy of the tree can carry a .git whose HEAD is not the tree that ran
        # (seen: main's sha, "-dirty"), so the sha given by the caller wins
        rec["git_sha"] = os.environ["FVBENCH_GIT_SHA"]
    text = json.dumps(to_jsonable(rec), indent=2) + "\n"
    path = results_dir() / f"{name}-{profile.name}-{device_slug(device)}.json"
    atomic_write(path, lambda p: p.write_text(text))
    if os.environ.get("OUT"):
        atomic_write(Path(os.environ["OUT"]) / path.name, lambda p: p.write_text(text))
    return path


def summary(name: str, path: Path, **fields: Any) -> None:
    """Print the script's one summary line: 'SUMMARY name k=v ... -> path'."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{fmt(x)}" for k, x in v.items()) + "}"
        return str(v)
    print(f"SUMMARY {name} " + " ".join(f"{k}={fmt(v)}" for k, v in fields.items()) + f" -> {path}",
          flush=True)


# ----------------------------------------------------------------------------- timing

def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], device: torch.device, steps: int, warmup: int = 3) -> float:
    """Mean seconds per call of step() after warmup calls (synchronised at both ends only)."""
    for _ in range(warmup):
        step()
    with timer(device) as t:
        for _ in range(steps):
            step()
    return t["seconds"] / steps


# ----------------------------------------------------------------------------- FLOPs

def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls/convolutions fn runs, by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def train_flops_per_image(model: nn.Module, image_shape: tuple, num_classes: int,
                          device: torch.device, batch: int = 4) -> float:
    """FLOPs of one training image: forward + weight/activation backward (SGD on θ)."""
    net = copy.deepcopy(model).train().requires_grad_(True)  # a copy: θ_o's BN statistics stay
    x = torch.rand(batch, *image_shape, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    return count_flops(lambda: F.cross_entropy(net(x), y).backward()) / batch


def delta_flops_per_image(model: nn.Module, image_shape: tuple, num_classes: int,
                          device: torch.device, batch: int = 4) -> float:
    """FLOPs of one forget-vector image: forward + input-gradient backward with frozen weights."""
    net = copy.deepcopy(model).eval().requires_grad_(False)
    x = torch.rand(batch, *image_shape, device=device)
    delta = torch.zeros(1, *image_shape, device=device, requires_grad=True)
    y = torch.randint(0, num_classes, (batch,), device=device)
    return count_flops(lambda: F.cross_entropy(net(x + delta), y).backward()) / batch


def tflops(flops_per_image: float, images: float, seconds: float) -> float:
    """Achieved TFLOP/s, to 4 significant digits (CPU smoke values are tiny, GPU ones large)."""
    return sig(flops_per_image * images / max(seconds, 1e-12) / 1e12)


def sig(x: float, digits: int = 4) -> float:
    """x rounded to `digits` significant digits."""
    return float(f"{x:.{digits}g}")


# ----------------------------------------------------------------------------- accuracy, through fvlib

def ua_ra_ta(system: nn.Module, data, split: splits.Split) -> dict[str, float]:
    """UA, RA, TA in % of a system on one split, by metrics.evaluate without the MIA (the speed
    scripts skip the CPU-bound SVC)."""
    return {k: metrics.percent(v) for k, v in metrics.evaluate(system, data, split, mia=None).items()}


def with_delta(model: nn.Module, delta: torch.Tensor) -> nn.Module:
    """The system θ_o(x + δ) of a bare δ (3, H, W) from a reference loop."""
    return ForgetVector(delta).wrap(model)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in % of uint8 images x (N, H, W, 3)."""
    return metrics.percent(metrics.accuracy(model, x, y))
