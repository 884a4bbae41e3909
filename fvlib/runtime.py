"""Device choice, seeding, precision: one place for what differs between CUDA and CPU."""
from __future__ import annotations

import contextlib
import random
import time
from typing import Iterator

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; any other string is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


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
