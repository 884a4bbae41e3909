"""fvlib.executor without Ray: the serial executor's contract (the Ray executor keeps the same one:
tests/cluster/test_local.py), batches for K vectors over GPUs, and a clear error when Ray is absent."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fvlib import executor
from fvlib.executor import SerialExecutor, Unit, UnitsFailed, split_evenly
from fvlib.paths import ROOT


def square(x: int) -> int:
    return x * x


def fail(msg: str) -> None:
    raise ValueError(msg)


def test_serial_results_in_order_and_done_in_the_driver():
    seen = []
    out = SerialExecutor().run([Unit(f"sq {i}", square, (i,)) for i in range(4)],
                               lambda u, r: seen.append((u.label, r, os.getpid())))
    assert out == [0, 1, 4, 9]
    assert seen == [(f"sq {i}", i * i, os.getpid()) for i in range(4)]


def test_follow_up_units_reach_done_but_not_the_results():
    seen = {}

    def done(unit, result):
        seen[unit.label] = result
        if unit.label.startswith("gpu"):  # e.g. the MIA fit on a system's features
            return [Unit(f"cpu fit of {unit.label}", square, (result,))]
    out = SerialExecutor().run([Unit("gpu 2", square, (2,)), Unit("gpu 3", square, (3,))], done)
    assert out == [4, 9]
    assert seen == {"gpu 2": 4, "gpu 3": 9, "cpu fit of gpu 2": 16, "cpu fit of gpu 3": 81}


def test_a_failing_unit_is_named_once_and_the_others_are_kept():
    seen = []
    units = [Unit("ok 1", square, (1,)), Unit("fv, classwise trial 3", fail, ("lr must be > 0",)),
             Unit("ok 2", square, (2,))]
    with pytest.raises(UnitsFailed) as err:
        SerialExecutor().run(units, lambda u, r: seen.append(u.label))
    assert seen == ["ok 1", "ok 2"]
    assert "1 of 3 units failed" in str(err.value)
    assert "fv, classwise trial 3: ValueError: lr must be > 0" in str(err.value)
    assert [u.label for u, _ in err.value.failures] == ["fv, classwise trial 3"]
    assert isinstance(err.value.__cause__, ValueError)


def test_share_is_the_object_itself_in_process():
    obj = {"w": [1, 2]}
    assert SerialExecutor().share(obj) is obj


@pytest.mark.parametrize("k, parts, sizes", [(10, 1, [10]), (10, 3, [3, 3, 4]), (10, 4, [2, 3, 2, 3]),
                                             (10, 32, [1] * 10), (1, 8, [1]), (0, 8, [])])
def test_split_evenly(k, parts, sizes):
    batches = split_evenly(list(range(k)), parts)
    assert [len(b) for b in batches] == sizes
    assert [x for b in batches for x in b] == list(range(k))  # contiguous, nothing lost or repeated


def test_bad_names_and_parts_are_clear_errors():
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: serial, ray"):
        executor.get("dask")
    with pytest.raises(ValueError, match="parts must be >= 1"):
        split_evenly([1, 2], 0)
    assert executor.get().kind == executor.get("serial").kind == "serial"


def test_without_ray_fvlib_imports_and_asking_for_ray_says_how_to_install():
    code = """
import sys
sys.modules["ray"] = None  # as if Ray were not installed: `import ray` raises ImportError
import fvlib.executor as ex
assert ex.SerialExecutor().run([ex.Unit("sq", abs, (-3,))]) == [3]
try:
    ex.get("ray")
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert 'needs Ray, which is not installed. Ray is an optional extra: pip install -e ".[ray]"' in out.stdout
