"""A simulated two-node Ray cluster (ray.cluster_utils.Cluster, 1 CPU per node, loopback only): a
task runs on each node, each node works in its own folder, and an object put once by the driver
reaches both nodes intact (how θ_o will travel: no shared filesystem needed)."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the `ray` extra: pip install -e '.[ray]'")
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules


def _on(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id, soft=False)


@ray.remote
def where_am_i(name: str) -> dict:
    """This worker's node, its FVLIB_CACHE, and a file written there."""
    cache = Path(os.environ["FVLIB_CACHE"])
    (cache / name).write_text(str(os.getpid()))
    return {"node": ray.get_runtime_context().get_node_id(), "cache": str(cache)}


def _digest(state: dict) -> tuple[str, str]:
    """(node id, sha256 over the tensors' names and bytes) of a state dict from the object store."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode() + state[k].contiguous().numpy().tobytes())
    return ray.get_runtime_context().get_node_id(), h.hexdigest()


digest = ray.remote(_digest)


def test_two_alive_nodes_with_one_cpu_each(two_nodes):
    alive = {n["NodeID"]: n["Resources"]["CPU"] for n in ray.nodes() if n["Alive"]}
    assert alive == {node: 1.0 for node in two_nodes}


def test_a_task_runs_on_each_node_in_its_own_folder(two_nodes):
    out = ray.get([where_am_i.options(scheduling_strategy=_on(node)).remote(f"from-{i}")
                   for i, node in enumerate(two_nodes)], timeout=120)
    assert [o["node"] for o in out] == list(two_nodes)
    assert [o["cache"] for o in out] == [str(f) for f in two_nodes.values()]
    for i, folder in enumerate(two_nodes.values()):  # each node wrote to its folder only
        assert sorted(p.name for p in folder.iterdir()) == [f"from-{i}"]


def test_an_object_put_once_reaches_both_nodes_intact(two_nodes):
    import torch
    state = {"w": torch.randn(64, 3, 3, 3, generator=torch.Generator().manual_seed(0)),
             "bn.running_var": torch.rand(64, generator=torch.Generator().manual_seed(1))}
    ref = ray.put(state)
    here = _digest(state)[1]  # computed by the driver
    got = ray.get([digest.options(scheduling_strategy=_on(n)).remote(ref) for n in two_nodes], timeout=120)
    assert got == [(n, here) for n in two_nodes]
