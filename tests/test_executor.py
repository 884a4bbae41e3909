"""fvlib.executor without a Ray instance: which executor a name, an object or $FVLIB_EXECUTOR gives,
how a batch of K vectors is spread over the GPUs, and a clear error when Ray is absent (the executor on
a running Ray instance is tested in tests/cluster, inside a loopback-only network namespace)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fvlib import executor, records, systems
from fvlib.cache import cache_dir
from fvlib.executor import split_evenly
from fvlib.paths import ROOT


def test_no_name_and_no_environment_variable_is_the_serial_default(monkeypatch):
    monkeypatch.delenv(executor.ENV, raising=False)
    assert executor.get() is None and executor.get(None) is None    # records.run: records.Serial()
    assert isinstance(executor.get("serial"), records.Serial)
    mine = records.Serial(mia_workers=2)
    assert executor.get(mine) is mine                                # an executor object as it is


def test_ray_names_and_the_environment_variable(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv(executor.ENV, raising=False)
    assert executor.get("ray").address is None                      # a local instance, at first use
    assert executor.get("ray:auto").address == "auto"
    monkeypatch.setenv(executor.ENV, "ray:10.1.2.3:6379")
    got = executor.get()
    assert isinstance(got, executor.Ray) and got.address == "10.1.2.3:6379"
    assert executor.get("serial").__class__ is records.Serial        # a name given beats the variable


def test_bad_executors_are_one_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"executor is 'dask', which names no executor; use 'serial', 'ray'"):
        executor.get("dask")
    with pytest.raises(TypeError, match="an object with run\\(ex, units, progress\\), not a int"):
        executor.get(3)
    monkeypatch.setenv(executor.ENV, "rya")
    with pytest.raises(ValueError, match="the environment variable FVLIB_EXECUTOR is 'rya'"):
        executor.get()
    with pytest.raises(ValueError, match="parts must be >= 1"):
        split_evenly([1, 2], 0)


def test_setup_takes_the_executor_from_the_environment(monkeypatch, trained):
    import fvlib
    pytest.importorskip("ray")
    monkeypatch.setenv(executor.ENV, "ray:auto")
    ex = fvlib.setup("smoke", progress=False)  # θ_o from the session cache; Ray is not started
    assert isinstance(ex.executor, executor.Ray) and ex.executor.address == "auto"
    monkeypatch.setenv(executor.ENV, "nope")
    with pytest.raises(ValueError, match="FVLIB_EXECUTOR is 'nope'"):
        fvlib.setup("smoke", progress=False)


def test_session_sets_the_variable_for_the_block_only(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv(executor.ENV, "serial")
    with executor.session(None) as address:
        assert address is None and os.environ[executor.ENV] == "serial"
    with executor.session("10.1.2.3:6379"):
        assert os.environ[executor.ENV] == "ray:10.1.2.3:6379"
    assert os.environ[executor.ENV] == "serial"


@pytest.mark.parametrize("k, parts, sizes", [(10, 1, [10]), (10, 3, [3, 3, 4]), (10, 4, [2, 3, 2, 3]),
                                             (10, 32, [1] * 10), (1, 8, [1]), (0, 8, [])])
def test_split_evenly(k, parts, sizes):
    batches = split_evenly(list(range(k)), parts)
    assert [len(b) for b in batches] == sizes
    assert [x for b in batches for x in b] == list(range(k))  # contiguous, nothing lost or repeated


def test_without_ray_fvlib_works_and_asking_for_ray_says_how_to_install():
    code = """
import sys
sys.modules["ray"] = None  # as if Ray were not installed: `import ray` raises ImportError
from fvlib import executor, run
assert executor.get() is None
try:
    executor.get("ray")
except ImportError as err:
    print(err)
try:
    run.parse_args(["smoke", "--ray"])
except SystemExit as err:
    print("exit", err.code)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), executor.ENV: ""})
    assert out.returncode == 0, out.stderr
    assert 'needs Ray, which is not installed. Ray is an optional extra: pip install -e ".[ray]"' in out.stdout
    assert "exit 2" in out.stdout and "--ray needs Ray, which is not installed" in out.stderr


def test_a_unit_becomes_a_task_per_split_and_a_batch_is_chunked_over_idle_slots(experiment):
    """Two trials: GA gives a task per split; the forget vectors' batch stays whole unless the
    other tasks leave slots (GPUs) idle, then it is split over them."""
    def compute(ex, system, split, item):
        return {"value": item}
    grids = [records.Grid("tasks", m, experiment.splits("classwise"), [None], compute) for m in ("ga", "fv")]
    units = [records.plan(experiment, g)[1] for g in grids]
    labels = lambda slots: [t.label for t in executor.Ray._tasks(experiment, units, slots)]  # noqa: E731
    assert labels(3) == ["ga on classwise-0 (tasks records)", "ga on classwise-1 (tasks records)",
                         "fv on classwise-0, classwise-1 (tasks records)"]
    assert labels(8)[2:] == ["fv on classwise-0 (tasks records)", "fv on classwise-1 (tasks records)"]
    tasks = executor.Ray._tasks(experiment, units, 8)
    assert [t.files for t in tasks] == [[str(p.relative_to(cache_dir())) for p in systems.artifacts(
        experiment, t.unit.grid.method, [t.unit.splits[r] for r in t.rows])] for t in tasks]
