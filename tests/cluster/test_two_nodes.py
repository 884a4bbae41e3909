"""The smoke Table 1 on a simulated two-node Ray cluster (ray.cluster_utils.Cluster, 1 CPU per node,
loopback only) whose workers see different FVLIB_CACHE folders: θ_o reaches both nodes through the
object store, tasks run on both, a batched solve alone is split over them, no worker writes a cache
folder, and the records of both machines land in the driver's store, which a serial rerun reads."""
from __future__ import annotations

import copy
import sys

import pytest

ray = pytest.importorskip("ray", reason="Ray is the `ray` extra: pip install -e '.[ray]'")

import smoke  # noqa: E402  (tests/cluster/smoke.py)
from fvlib import executor, records, systems  # noqa: E402
from fvlib.mia import MIAConfig  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_two_alive_nodes_with_one_cpu_each(two_nodes):
    alive = {n["NodeID"]: n["Resources"]["CPU"] for n in ray.nodes() if n["Alive"]}
    assert alive == {node: 1.0 for node in two_nodes}


def test_the_table_on_two_nodes_lands_in_the_drivers_store(two_nodes, tmp_path, monkeypatch):
    ex = smoke.experiment()   # the driver: θ_o trained (or read) here, once
    serial_keys = {records.key(ex, "study", m, s, None, MIAConfig())
                   for m in smoke.METHODS for s in ex.splits("classwise", smoke.TRIALS)}
    clustered = copy.copy(ex)
    clustered.executor = executor.Ray()
    with smoke.cache(tmp_path / "driver") as folder:
        fv = smoke.table(clustered, ("fv",)).to_dict("records")  # alone: its batch fills both nodes
        assert [r["solved_together"] for r in fv] == [1, 1]       # K = 2 split over the two nodes
        assert {r["ran_on"]["node"] for r in fv} == set(two_nodes)
        recs = smoke.table(clustered).to_dict("records")          # then the rest of the table
        assert {r["key"] for r in recs} == serial_keys            # the same θ_o, data and splits
        assert {r["ran_on"]["node"] for r in recs} == set(two_nodes)  # both machines worked
        for node_cache in two_nodes.values():                      # workers wrote no cache folder
            assert not list(node_cache.iterdir())
        split_list = ex.splits("classwise", smoke.TRIALS)
        for m in smoke.METHODS:                                    # every system is in the driver's
            assert all(p.exists() for p in systems.artifacts(ex, m, split_list))
        from fvlib import baselines, solve, train
        for mod, name in ((train, "fit"), (baselines, "run"), (solve, "solve_many")):
            monkeypatch.setattr(mod, name, _refuse)
        again = smoke.table(ex)                                    # a serial rerun computes nothing
    assert sorted(again["key"]) == sorted(serial_keys)
    assert not list((folder / "records").rglob(".*"))             # no temp file left behind


def _refuse(*_a, **_k):
    raise AssertionError("a serial rerun recomputed something the cluster computed")
