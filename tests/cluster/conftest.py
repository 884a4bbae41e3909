"""Ray test fixtures: a loopback-only sandbox, one Ray start per module, nothing left running.

Every test in tests/cluster first checks that this process sees no network interface but `lo` (a
network namespace of its own, made by tools/loopback.py: `make test-cluster`). Outside one the tests
FAIL and say how to run them: Ray binds its nodes to the machine's interface address even when told
127.0.0.1, and test traffic must never leave loopback.

`local_ray` starts a local instance with 2 CPUs; `two_nodes` a simulated cluster of two nodes whose
workers see different FVLIB_CACHE folders. Both are started by ray.cluster_utils.Cluster (the same
node processes as `ray.init()`), without the autoscaler monitor and the log monitor, which tests do
not use (a quarter of the start time on a loaded 2-core machine). Each is module-scoped (a Ray start
costs seconds) and on teardown shuts Ray down and fails if any process of that instance outlives it
(after killing it, so nothing is left behind either way).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from sandbox import loopback_problem, ray_sandbox

LEAN = {"include_dashboard": False, "no_monitor": True, "include_log_monitor": False}


@pytest.fixture(scope="session", autouse=True)
def loopback_only() -> None:
    """Fail (never skip) unless this process sees only the loopback interface, and it works."""
    problem = loopback_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def local_ray(loopback_only) -> Iterator[dict]:
    """A local Ray instance with 2 CPUs for the module; yields ray.cluster_resources()."""
    import ray
    from ray.cluster_utils import Cluster
    with ray_sandbox():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, **LEAN})
        try:
            cluster.connect()
            yield ray.cluster_resources()
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def two_nodes(loopback_only, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """A simulated two-node cluster (1 CPU each) whose workers see different FVLIB_CACHE folders;
    yields {node id: that node's cache folder}."""
    import ray
    from ray.cluster_utils import Cluster
    folders = [tmp_path_factory.mktemp(f"node{i}") for i in range(2)]
    with ray_sandbox():
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, **LEAN, "env_vars": {"FVLIB_CACHE": str(folders[0])}})
        try:
            node = cluster.add_node(num_cpus=1, env_vars={"FVLIB_CACHE": str(folders[1])})
            cluster.connect()
            yield {cluster.head_node.node_id: folders[0], node.node_id: folders[1]}
        finally:
            ray.shutdown()
            cluster.shutdown()
