"""The smoke Table 1 through fvlib.executor.Ray on a local instance (2 CPUs, loopback only, one start for
the module): its records equal a serial run's, the driver alone writes the cache (a serial rerun
computes nothing), the MIA fits are tasks of their own, a killed worker is retried, a real error is
named once while the other records are written, and a killed driver resumes. Plus the Ray behaviour
the executor relies on (retry after SIGKILL, no retry after an exception)."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the `ray` extra: pip install -e '.[ray]'")

import smoke  # noqa: E402  (tests/cluster/smoke.py)
from fvlib import executor, systems, worker  # noqa: E402
from fvlib.cache import load_tensors  # noqa: E402
from fvlib.paths import ROOT  # noqa: E402
from sandbox import ray_processes  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules


@pytest.fixture(scope="module")
def ex(local_ray):
    """The shortened smoke experiment (θ_o trained here, once), serial."""
    return smoke.experiment()


def on_ray(ex, **kw):
    """ex with a Ray executor (joining the module's instance)."""
    out = copy.copy(ex)
    out.executor = executor.Ray(**kw)
    return out


@pytest.fixture(scope="module")
def serial(ex, tmp_path_factory):
    """(records, cache folder) of the serial run."""
    with smoke.cache(tmp_path_factory.mktemp("serial")) as folder:
        return smoke.table(ex), folder


@pytest.fixture(scope="module")
def clustered(ex, tmp_path_factory):
    """(records, cache folder) of an undisturbed run on Ray, from an empty cache."""
    with smoke.cache(tmp_path_factory.mktemp("ray")) as folder:
        return smoke.table(on_ray(ex)), folder


def by_key(recs) -> dict[str, dict]:
    return {r["key"]: r for r in recs.to_dict("records")}


def assert_same_records(got, want) -> None:
    """Same record keys; every metric equal to float tolerance (a metric may move by one borderline
    image of the smallest set, the ~45 forgotten images: 0.022); NaN (MIA_loss of an attack without
    power) only where the other run has NaN too."""
    got, want = by_key(got), by_key(want)
    assert set(got) == set(want)
    for k, w in want.items():
        assert (got[k]["method"], got[k]["trial"]) == (w["method"], w["trial"])
        for m in smoke.METRICS:
            assert got[k][m] == pytest.approx(w[m], abs=0.025, nan_ok=True), (w["method"], w["trial"], m)


def system_files(folder: Path) -> dict[str, Path]:
    """Every vector and model file of a cache folder, by relative path."""
    found = [*folder.glob("vectors/*.safetensors"), *folder.glob("*.safetensors")]
    return {str(p.relative_to(folder)): p for p in found}


# ----------------------------------------------------------------------------- the same numbers

def test_ray_records_equal_the_serial_runs(serial, clustered):
    assert_same_records(clustered[0], serial[0])
    assert len(clustered[0]) == len(smoke.METHODS) * len(smoke.TRIALS)
    # the systems behind them too: every vector and model the serial run made, to float tolerance
    mine, theirs = system_files(clustered[1]), system_files(serial[1])
    assert set(mine) == set(theirs) and len(mine) == 2 + 2 + 2   # Retrain, GA, δ: one per trial
    for rel, path in theirs.items():
        want, got = load_tensors(path)[0], load_tensors(mine[rel])[0]
        assert set(got) == set(want), rel
        for name in want:
            assert got[name].float().allclose(want[name].float(), rtol=1e-4, atol=1e-5), (rel, name)


def test_workers_built_the_systems_and_the_mia_fits_were_tasks_of_their_own(clustered):
    for rec in clustered[0].to_dict("records"):
        assert rec["ran_on"]["pid"] != os.getpid() and rec["ran_on"]["device"].startswith("cpu")
        assert rec["mia_ran_on"]["pid"] != os.getpid()   # mia.run_job, a 1-CPU task: no pool in a worker


def test_the_driver_wrote_everything_a_serial_rerun_reads(ex, clustered, monkeypatch):
    """θ_o was not trained again and every system is in the driver's cache: a serial rerun (as the
    notebook does) finds every record and could rebuild every system without training anything."""
    from fvlib import baselines, solve, train

    def refuse(*_a, **_k):
        raise AssertionError("a serial rerun recomputed something the cluster computed")
    for mod, name in ((train, "fit"), (baselines, "run"), (solve, "solve_many")):
        monkeypatch.setattr(mod, name, refuse)
    recs, folder = clustered
    with smoke.cache(folder):
        again = smoke.table(ex)
        cols = ["key", *smoke.METRICS]
        assert again.sort_values("key")[cols].reset_index(drop=True).equals(
            recs.sort_values("key")[cols].reset_index(drop=True))
        split_list = ex.splits("classwise", smoke.TRIALS)
        for m in smoke.METHODS:
            assert all(p.exists() for p in systems.artifacts(ex, m, split_list))
            assert [s.info.get("cache_hit", True) for s in systems.build(ex, m, split_list)] == [True, True]
        retrain = {p.name for p in systems.artifacts(ex, "retrain", split_list)}
    assert {p.name for p in folder.glob("model-*.safetensors")} == retrain  # no θ_o: the driver had it
    assert not [p for p in folder.rglob(".*") if p.is_file()]  # no lock or temp file left


def test_a_worker_that_rebuilds_a_different_theta_o_refuses(ex):
    import torch
    payload = ray.get(executor.Ray()._share(ex))  # what workers get, then one claiming another θ_o
    wrong = ray.put({**payload, "identity": (ex.identity[0], "0" * 16, ex.identity[2])})
    with pytest.raises(RuntimeError, match="every node must run the same fvlib and torch"):
        worker.experiment(wrong, torch.device("cpu"))


# ----------------------------------------------------------------------------- faults

def _kill_first_unit_task(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first worker of this instance seen running a unit task (titled `ray::<method> on
    <split> (...)` while it runs one)."""
    while not stop.is_set():
        for pid, title in ray_processes(os.environ["RAY_TMPDIR"]).items():
            if title.startswith("ray::") and " on classwise-" in title and "MIA fit" not in title:
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, title))
                return
        time.sleep(0.02)


def test_a_killed_worker_is_retried_and_the_records_equal_an_undisturbed_run(ex, clustered, tmp_path):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_unit_task, args=(killed, stop), daemon=True)
    killer.start()
    try:
        with smoke.cache(tmp_path):
            recs = smoke.table(on_ray(ex), ("ga",))
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no unit task was seen running"
    assert killed[0][0] not in {r["ran_on"]["pid"] for r in recs.to_dict("records")}
    assert_same_records(recs, clustered[0][clustered[0]["method"] == "ga"])


def test_a_real_error_is_named_once_and_the_other_records_are_written(ex, tmp_path):
    from fvlib.baselines.ga import GAConfig
    bad = on_ray(ex)
    bad.profile = ex.profile.replace(baselines={**ex.profile.baselines, "ga": GAConfig(lr=-1.0)})
    with smoke.cache(tmp_path), pytest.raises(executor.UnitsFailed) as err:
        smoke.table(bad, ("original", "ga"))
    text = str(err.value)
    assert text.startswith("2 of 6 tasks failed")  # θ_o: 2 builds + 2 fits; GA failed on both splits
    for trial in smoke.TRIALS:
        assert f"  ga on classwise-{trial} (study records): ValueError: Invalid learning rate: -1.0" in text
    written = [json.loads(p.read_text()) for p in (tmp_path / "records" / "study").glob("*.json")]
    assert sorted((r["method"], r["trial"]) for r in written) == [("original", t) for t in smoke.TRIALS]


def test_tasks_that_raise_are_not_retried_but_killed_workers_are(ex):
    run = executor._Run(executor.Ray(retries=2), ex, [], {"num_cpus": 1, "num_gpus": 0}, [], 1)
    assert run.opts["retry_exceptions"] is False and run.opts["max_retries"] == 2


def test_a_killed_driver_resumes_from_the_records_already_written(ex, clustered, tmp_path):
    shutil.copy(smoke.theta_o_file(ex), tmp_path)  # the driver process finds θ_o as a notebook would
    env = {**os.environ, "FVLIB_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT),
           executor.ENV: f"ray:{ray.get_runtime_context().gcs_address}"}
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen([sys.executable, str(Path(smoke.__file__))], env=env, cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT)
    folder, deadline = tmp_path / "records" / "study", time.monotonic() + 300
    while not list(folder.glob("*.json")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.kill()
    assert driver.wait() == -signal.SIGKILL, f"the driver ended before it was killed:\n{log.read_text()}"
    before = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    assert 1 <= len(before) < 4
    with smoke.cache(tmp_path):
        recs = smoke.table(on_ray(ex), ("ga", "retrain"))
    assert {p.name: p.read_bytes() for p in folder.glob("*.json") if p.name in before} == before
    assert_same_records(recs, clustered[0][clustered[0]["method"].isin(["ga", "retrain"])])


def test_session_points_notebooks_at_the_running_instance():
    with executor.session("local") as address:
        assert address == ray.get_runtime_context().gcs_address
        assert os.environ[executor.ENV] == f"ray:{address}"
        assert isinstance(executor.get(), executor.Ray) and executor.get().address == address
    assert executor.ENV not in os.environ and ray.is_initialized()  # it did not start, so not stop, it


# ----------------------------------------------------------------------------- Ray itself

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
    if _attempt(Path(marker)) == 1:
        time.sleep(120)
    return {"pid": os.getpid()}


@ray.remote(max_retries=3, retry_exceptions=False)
def bad_config(marker: str) -> None:
    """A real error (as a bad config gives): must not be retried."""
    _attempt(Path(marker))
    raise ValueError("lr must be > 0, got -1.0")


def test_ray_retries_a_sigkilled_worker_once(tmp_path):
    marker = tmp_path / "attempts"
    ref = slow_first_attempt.remote(str(marker))
    killed = _pids(marker, 1, ref)[0]
    os.kill(killed, signal.SIGKILL)
    out = ray.get(ref, timeout=120)
    assert _pids(marker, 2) == [killed, out["pid"]]  # exactly one retry, in another process


def test_ray_raises_a_real_error_once_without_retrying(tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(ValueError, match="lr must be > 0") as err:  # RayTaskError subclasses the cause
        ray.get(bad_config.remote(str(marker)), timeout=120)
    assert isinstance(err.value, ray.exceptions.RayTaskError)
    assert len(_pids(marker, 1)) == 1  # max_retries=3, yet one attempt only
