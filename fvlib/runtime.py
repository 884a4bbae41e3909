"""Device choice, seeding, precision: one place for what differs between CUDA and CPU."""
from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Iterator

import numpy as np
import torch


# CPU numerics depend on the intra-op thread count and on the instruction set of the kernels
# (measured on one machine, smoke θ_o: 1, 2, 3 and 4 threads give four different models, and so do
# AVX2 and AVX-512 kernels at 2 threads; deterministic algorithms change nothing on a CPU). A new
# process started with this environment runs 2 threads and the AVX2 kernels of ATen, oneDNN and MKL
# (MKL_CBWR: its conditional numerical reproducibility mode), so CPU runs of one torch version
# compare across x86-64 machines with AVX2. A fixed count, not the machine's: the count changes
# reduction order. 2, not 1: the embedded run takes 292 s with 2 threads vs 434 s with 1 on a 2-core
# CPU (measured 2026-11-30, quiet machine). FVLIB_CPU_THREADS changes it.
CPU_PIN_THREADS = 2


def cpu_pin_env() -> dict[str, str]:
    """Environment variables that pin a NEW process's CPU numerics (threads and AVX2 kernels); they
    act only when set before torch starts, so fvlib.run gives them to the notebook kernels."""
    n = os.environ.get("FVLIB_CPU_THREADS") or str(CPU_PIN_THREADS)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


SUPPORTED_DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu', 'cuda', 'cuda:N' as given; anything else (meta,
    mps, ...: fvlib's code paths are CPU and CUDA only) is a ValueError naming the supported ones."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {name!r} is not supported ({err}); use {SUPPORTED_DEVICES}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not supported: fvlib runs on {SUPPORTED_DEVICES} only")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
    return device


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """os.environ updated with values for the block; each variable comes back as it was (an unset
    one unset again), also when the block raises."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Bitwise GPU determinism is not relied on."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator derived from (seed, purpose), so each use of randomness is independent."""
    mix = int.from_bytes(purpose.encode(), "little") % (2**31)
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + mix) % (2**63 - 1))
    return g


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op (float32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to device; channels_last on CUDA (inputs from NHWC uint8 are already channels_last)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def device_name(device: torch.device) -> str:
    """Human-readable device name for provenance records."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return (f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()} kernels)")


@contextlib.contextmanager
def timer(device: torch.device) -> Iterator[dict]:
    """{'seconds': wall-clock seconds} of a block, synchronising CUDA so GPU work is counted, and on
    CUDA {'gpu_seconds'} between two CUDA events (the device's own clock)."""
    out: dict = {}
    events = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        events[0].record()
    start = time.perf_counter()
    yield out
    if events is not None:
        events[1].record()
        torch.cuda.synchronize(device)
        out["gpu_seconds"] = events[0].elapsed_time(events[1]) / 1000.0
    out["seconds"] = time.perf_counter() - start
