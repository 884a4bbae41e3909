"""The worker's side of `fvlib.executor.Ray`: what one Ray task does with (a part of) a unit.

It rebuilds the driver's experiment from the object store (θ_o from its state dict, checked against
the driver's fingerprint, once per worker process), builds the unit's systems in a private scratch
cache seeded with the files the driver sent, computes the records (`records.execute`, the MIA fits
left as jobs for the driver to submit), and returns the files it built. A worker never writes any
cache folder: its scratch folder is deleted after the task.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from fvlib import records
from fvlib.runtime import environment

if TYPE_CHECKING:
    from fvlib.experiment import Experiment
    from fvlib.splits import Split

_EXPERIMENTS: dict[tuple, "Experiment"] = {}  # per worker process: the experiments it has rebuilt


def moved(split: "Split", device: Any) -> "Split":
    """The split with its masks on device."""
    return dataclasses.replace(split, **{f: getattr(split, f).to(device)
                                         for f in ("forget", "test_eval", "test_forget")})


def _where(device: Any) -> dict:
    """Which worker ran a task: host, Ray node, device, process."""
    import socket

    import ray
    from fvlib.runtime import device_name
    return {"host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
            "device": device_name(device), "pid": os.getpid()}


def experiment(ref: Any, device: Any) -> "Experiment":
    """The driver's experiment rebuilt in this worker (once per process): θ_o from its state dict."""
    key = (ref.hex(), str(device))
    if key not in _EXPERIMENTS:
        import ray
        from fvlib import models
        from fvlib.experiment import Experiment
        from fvlib.runtime import prepare_model
        p = ray.get(ref)
        data = p["data"]
        model = models.build(p["profile"].model, data.num_classes, data.spec.mean, data.spec.std)
        model.load_state_dict(p["state"])
        ex = Experiment(p["profile"], data.to(device), prepare_model(model, device).eval(), p["info"],
                        p["development"])
        if ex.identity != p["identity"]:
            raise RuntimeError(f"θ_o rebuilt in this worker has the identity {ex.identity}, not the driver's "
                               f"{p['identity']}: every node must run the same fvlib and torch versions")
        while len(_EXPERIMENTS) >= 2:  # a study uses one experiment, FV+ selection two
            _EXPERIMENTS.pop(next(iter(_EXPERIMENTS)))
        _EXPERIMENTS[key] = ex
    return _EXPERIMENTS[key]


@contextlib.contextmanager
def _scratch(files: dict[str, bytes]) -> Iterator[Path]:
    """A private cache folder holding files, as FVLIB_CACHE for the block (then deleted): whatever
    the block writes to the cache stays out of the driver's (and any shared) cache."""
    with tempfile.TemporaryDirectory(prefix="fvlib-task-") as tmp, environment(FVLIB_CACHE=tmp):
        root = Path(tmp)
        for rel, blob in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(blob)
        yield root


def build(box: list, unit: records.Unit, have: dict[str, bytes], want: Sequence[str], cpus: float
          ) -> tuple[dict[str, bytes], list]:
    """A Ray task: build the unit's systems and compute its records -> (the files of `want` it made,
    [(split index, item, record fields, MIA job or None)]). box = [the shared experiment's ref];
    have: files the driver's cache holds for these systems (relative path -> bytes)."""
    import ray
    import torch
    from fvlib.runtime import seed_everything
    device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cpus)))  # Ray sets OMP threads to the task's CPUs: say so to torch
    seed_everything(0)  # as a notebook's setup call: stray global RNG use does not depend on the worker
    ex = experiment(box[0], device)
    grid = dataclasses.replace(unit.grid, splits=[moved(s, device) for s in unit.grid.splits])
    unit = dataclasses.replace(unit, grid=grid, splits=list(grid.splits))
    where = _where(device)
    with _scratch(have) as root:
        outs = [(i, item, {**rec, "ran_on": where}, job) for _u, i, item, rec, job in records.execute(ex, unit)]
        made = {rel: (root / rel).read_bytes() for rel in want if (root / rel).exists()}
    return made, outs
