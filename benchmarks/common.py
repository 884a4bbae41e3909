"""Shared helpers of the benchmark scripts: arguments, result JSON, FLOP counts, timers, accuracy.

Every script writes one JSON, `<name>-<profile>-<device-slug>.json`, into benchmarks/results/ (or
into $FVBENCH_RESULTS when set: CPU smoke checks and device sessions keep git clean that way), plus
a copy into $OUT when that is set (a device run's return folder). Only fvlib's public calls are used,
so the scripts survive redesigns of its internals.

Scripts import this module as `benchmarks.common` after putting the repository root on sys.path, so
they also run where fvlib is not pip-installed (the GPU machine's stock python3).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # fvlib importable without installation
    sys.path.insert(0, str(ROOT))

from fvlib import config, train  # noqa: E402
from fvlib.provenance import provenance, to_jsonable  # noqa: E402

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
    old = os.environ.get("FVLIB_CACHE")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["FVLIB_CACHE"] = str(tmp)
    try:
        yield tmp
    finally:
        if old is None:
            os.environ.pop("FVLIB_CACHE", None)
        else:
            os.environ["FVLIB_CACHE"] = old
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


def _atomic_write_text(path: Path, text: str) -> None:
    """Write text to path via a temp file in the same folder and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if rec.get("git_sha") == "unknown" and os.environ.get("FVBENCH_GIT_SHA"):
        rec["git_sha"] = os.environ["FVBENCH_GIT_SHA"]  # device copies of the tree carry no .git
    text = json.dumps(to_jsonable(rec), indent=2) + "\n"
    path = results_dir() / f"{name}-{profile.name}-{device_slug(device)}.json"
    _atomic_write_text(path, text)
    if os.environ.get("OUT"):
        _atomic_write_text(Path(os.environ["OUT"]) / path.name, text)
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


@contextlib.contextmanager
def timed(device: torch.device) -> Iterator[dict]:
    """{'seconds': synchronised wall time} of a block, plus 'gpu_seconds' from CUDA events on CUDA."""
    out: dict = {}
    events = None
    sync(device)
    if device.type == "cuda":
        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        events[0].record()
    start = time.perf_counter()
    yield out
    if events is not None:
        events[1].record()
    sync(device)
    out["seconds"] = time.perf_counter() - start
    if events is not None:
        out["gpu_seconds"] = events[0].elapsed_time(events[1]) / 1000.0


def timed_cpu() -> contextlib.AbstractContextManager:
    """timed() without a device: plain wall-clock seconds (sync inside the block where needed)."""
    return timed(torch.device("cpu"))


def time_steps(step: Callable[[], Any], device: torch.device, steps: int, warmup: int = 3) -> float:
    """Mean seconds per call of step() after warmup calls (synchronised at both ends only)."""
    for _ in range(warmup):
        step()
    with timed(device) as t:
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


# ----------------------------------------------------------------------------- model helpers

def to_float(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1] (channels_last strides, as fvlib)."""
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled; a no-op otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 delta: torch.Tensor | None = None, batch_size: int = 1024) -> torch.Tensor:
    """(N,) bool: model(x + δ) predicts y, for uint8 images x (N, H, W, 3); bf16 on CUDA."""
    model.eval()
    out = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xf = to_float(xb)
        if delta is not None:
            xf = xf + delta.to(xf.device, xf.dtype)
        with autocast(xf.device):
            out.append(model(xf).argmax(1) == yb)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=x.device)


def ua_ra_ta(model: nn.Module, data, split, delta: torch.Tensor | None = None) -> dict[str, float]:
    """UA, RA, TA in % of one split (no MIA: the speed scripts skip the CPU-bound SVC)."""
    tr = correct_mask(model, data.train_x, data.train_y, delta).float()
    te = correct_mask(model, data.test_x[split.test_eval], data.test_y[split.test_eval], delta).float()
    pct = lambda v: 100.0 * v.mean().item() if len(v) else math.nan  # noqa: E731
    return {"UA": 100.0 - pct(tr[split.forget]), "RA": pct(tr[split.retain]), "TA": pct(te)}


def margins(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C&W margin z_y − max_{k≠y} z_k of logits z (B, C)."""
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
    return zy - other


def fv_objective(z: torch.Tensor, y: torch.Tensor, is_forget: torch.Tensor, delta: torch.Tensor,
                 beta: float, tau: float, lam: float) -> torch.Tensor:
    """The authors' code-form loss: (Σ_retain CE + Beta·Σ_forget max(margin, −τ) + Lambda·‖δ‖) / B."""
    b = len(y)
    f = is_forget.float()
    ce = F.cross_entropy(z, y, reduction="none")
    fwd = margins(z, y).clamp(min=-tau)
    return (((1 - f) * ce).sum() + beta * (f * fwd).sum() + lam * delta.norm()) / b
