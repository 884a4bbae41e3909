"""Device choice, seeding, precision: one place for what differs between CUDA and CPU."""
from __future__ import annotations

import contextlib
import random
import time
from typing import Iterator

import numpy as np
import torch


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
    """Wall-clock seconds of a block, synchronising CUDA so GPU work is counted."""
    out: dict = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield out
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out["seconds"] = time.perf_counter() - start
