"""Ray on a local instance (2 CPUs, loopback only): retries of killed workers, real errors surfacing
once, and both in the same shape through fvlib.executor (one Ray start for the module)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the `ray` extra: pip install -e '.[ray]'")

pytestmark = pytest.mark.usefixtures("local_ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules


def _attempt(marker: Path) -> int:
    """Append this worker's pid to marker; returns which attempt this is (1, 2, ...)."""
    with marker.open("a") as f:
        f.write(f"{os.getpid()}\n")
    return len(marker.read_text().split())


def _pids(marker: Path, n: int, ref=None, timeout: float = 120.0) -> list[int]:
    """The first n pids written to marker (waits for them; raises the task's error if ref ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in marker.read_text().split()] if marker.exists() else []
        if len(pids) >= n:
            return pids
        if ref is not None and ray.wait([ref], timeout=0)[0]:
            ray.get(ref)
        time.sleep(0.1)
    raise TimeoutError(f"no attempt {n} was recorded in {marker} within {timeout} s")


@ray.remote(max_retries=2)
def slow_first_attempt(marker: str) -> dict:
    """Attempt 1 waits to be killed; a retry returns at once."""
    attempt = _attempt(Path(marker))
    if attempt == 1:
        time.sleep(120)
    return {"attempt": attempt, "pid": os.getpid()}


@ray.remote(max_retries=3)
def bad_config(marker: str) -> None:
    """A real error (as a bad config gives): must not be retried."""
    _attempt(Path(marker))
    raise ValueError("lr must be > 0, got -1.0")


def test_local_instance_has_two_cpus(local_ray):
    assert local_ray["CPU"] == 2 and "GPU" not in local_ray


def test_sigkilled_worker_is_retried_and_the_task_succeeds(tmp_path):
    marker = tmp_path / "attempts"
    ref = slow_first_attempt.remote(str(marker))
    killed = _pids(marker, 1, ref)[0]
    os.kill(killed, signal.SIGKILL)                  # the driver kills the worker mid-task
    out = ray.get(ref, timeout=120)
    assert out["attempt"] == 2 and out["pid"] != killed
    assert _pids(marker, 2) == [killed, out["pid"]]  # exactly one retry


def test_a_real_error_is_raised_once_and_not_retried(tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(ValueError, match="lr must be > 0") as err:  # RayTaskError subclasses the cause
        ray.get(bad_config.remote(str(marker)), timeout=120)
    assert isinstance(err.value, ray.exceptions.RayTaskError)
    assert len(_pids(marker, 1)) == 1                # max_retries=3, yet one attempt only


def test_workers_exhausting_retries_surface_a_crash(tmp_path):
    marker = tmp_path / "attempts"
    ref = slow_first_attempt.options(max_retries=0).remote(str(marker))
    os.kill(_pids(marker, 1, ref)[0], signal.SIGKILL)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(ref, timeout=120)


# ----------------------------------------------------------------------------- fvlib.executor on Ray

def _square(x: int) -> int:
    return x * x


def _pid_and(x: int) -> tuple[int, int]:
    return os.getpid(), x


def _norms(state: dict, scale: float) -> dict:
    """A toy 'system build' on a shared state dict: the scaled ℓ2 norm of each array."""
    return {k: float((v * v).sum()) ** 0.5 * scale for k, v in state.items()}


def _dies_once(marker: str, x: int) -> int:
    """SIGKILLs its own worker on the first attempt (a crash, not an exception)."""
    if _attempt(Path(marker)) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def _bad(msg: str) -> None:
    raise ValueError(msg)


@pytest.fixture(scope="module")
def on_ray():
    from fvlib.executor import RayExecutor
    ex = RayExecutor()  # joins the module's instance (and leaves it running on close)
    yield ex
    ex.close()
    assert ray.is_initialized()


def test_ray_executor_equals_serial_with_a_shared_object(on_ray):
    import numpy as np  # not torch: a worker's torch import costs seconds (test_two_nodes ships tensors)
    from fvlib.executor import SerialExecutor, Unit
    state = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(4)}
    results = {}
    for ex in (SerialExecutor(), on_ray):
        ref = ex.share(state)
        seen = []
        out = ex.run([Unit(f"scale {s}", _norms, (ref, s)) for s in (1.0, 2.0, 3.0)],
                     lambda u, r: seen.append((u.label, os.getpid())))
        assert sorted(seen) == [(f"scale {s}", os.getpid()) for s in (1.0, 2.0, 3.0)]  # done: driver
        results[ex.kind] = out
    assert results["ray"] == results["serial"]


def test_ray_units_run_in_workers_and_follow_ups_are_submitted(on_ray):
    from fvlib.executor import Unit
    seen = {}

    def done(unit, result):
        seen[unit.label] = result
        if unit.label.startswith("gpu"):
            return [Unit(f"fit {unit.label}", _pid_and, (result[1] * 10,), cpus=1)]
    out = on_ray.run([Unit(f"gpu {i}", _pid_and, (i,)) for i in range(3)], done)
    assert [x for _pid, x in out] == [0, 1, 2]
    assert all(pid != os.getpid() for pid, _x in seen.values())
    assert sorted(x for _pid, x in seen.values()) == [0, 0, 1, 2, 10, 20]


def test_ray_executor_survives_a_killed_worker_and_names_a_failing_unit(on_ray, tmp_path):
    from fvlib.executor import Unit, UnitsFailed
    marker = tmp_path / "attempts"
    seen = []
    units = [Unit("dies once", _dies_once, (str(marker), 41), retries=1),
             Unit("retrain, random trial 7", _bad, ("lr must be > 0, got -1.0",), retries=3),
             Unit("square", _square, (5,))]
    with pytest.raises(UnitsFailed) as err:
        on_ray.run(units, lambda u, r: seen.append((u.label, r)))
    assert sorted(seen) == [("dies once", 42), ("square", 25)]
    assert len(marker.read_text().split()) == 2                  # killed once, retried once
    assert str(err.value).startswith("1 of 3 units failed")
    assert "retrain, random trial 7: ValueError: lr must be > 0, got -1.0" in str(err.value)


def test_a_worker_that_keeps_dying_is_reported_not_retried_forever(on_ray, tmp_path):
    from fvlib.executor import Unit, UnitsFailed
    marker = tmp_path / "attempts"
    with pytest.raises(UnitsFailed, match="its worker process died 1 times"):
        on_ray.run([Unit("dies", _dies_once, (str(marker), 0), retries=0)])


def test_a_unit_no_node_can_run_is_refused_before_anything_is_submitted(on_ray):
    from fvlib.executor import Unit
    with pytest.raises(ValueError, match=r"'fv, classwise trials 0-4' asks for 1 CPU and 1 GPU, but no node"):
        on_ray.run([Unit("square", _square, (2,)), Unit("fv, classwise trials 0-4", _square, (1,), gpus=1)])
    assert on_ray.gpus() == 0
