"""Ray's own costs, as a study on a cluster pays them, and the smoke Table 1 through a local Ray instance
vs the same table run serially: starting a local instance (and a simulated two-node cluster),
per-task overhead in milliseconds, shipping θ_o through the object store, and the table's wall time.

python tools/loopback.py python benchmarks/ray_overhead.py [PROFILE] [--cpus 2] [--tasks 500]
    [--no-cluster] [--no-table] [--table-trials N] [--table-methods retrain,ft,...] [--unit-cpus N]

Run it inside a loopback-only network namespace (tools/loopback.py, as `make test-cluster` runs the
Ray tests): the JSON records which network it saw. Measured, in this order:

  * `import_seconds`: `import ray`;
  * `local_start_seconds`: `ray.init(num_cpus=CPUS)` (no dashboard), the user's path, and
    `first_task_seconds`: the first no-op task (a worker process starts);
  * per-task overhead of a no-op task: `sequential_ms` (submit + wait, one at a time: a task's
    round trip) and `pipelined_ms` (TASKS submitted at once, then all awaited: wall / TASKS, the
    cost per task when a study submits its units together);
  * `object_store`: `first_tensor_task_seconds` (a task receiving one tensor: the worker imports
    torch), then per architecture (the profile's model, ResNet-18) `put_seconds` (`ray.put` of θ_o's
    state dict) and `ship_seconds` (a task that receives it);
  * `shutdown_seconds`, and with the cluster: `cluster_start_seconds` of a two-node
    ray.cluster_utils.Cluster (1 CPU per node, the tests' lean settings), a task on each node;
  * `table1`: the profile's class-wise Table 1 (every method, the profile's trials unless
    --table-trials) by `study.run_study`, first serially, then with `executor.Ray()` on a fresh
    local instance of CPUS CPUs, each from an empty cache (θ_o from fvlib's cache, trained on a
    miss): `serial_seconds`, `ray_seconds` (the instance already started), `ray_start_seconds`,
    their ratio (the target: at most 1.5 on a 2-core machine, where Ray cannot be faster), the same
    table once more on the now warm instance (`ray_warm_seconds`, `ratio_warm_workers`: workers
    started and torch imported, so the per-unit overhead alone), whether the record keys agree and
    the largest metric difference between the two runs.

Ray runs with the tests' environment (no usage stats, no auth token written to ~/.ray, a private
RAY_TMPDIR). The machine's load average is recorded before and after each part: on a shared machine
every time grows with the load.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402

ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
CPU = torch.device("cpu")  # every timing here is wall-clock on the host


def noop(x: int) -> int:
    return x


def nbytes(state: dict) -> int:
    """Bytes of a state dict's tensors (what the object store holds)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def task_overhead(ray, tasks: int) -> dict:
    """First-task latency, then ms per no-op task one at a time and all submitted together."""
    f = ray.remote(noop)
    with common.timer(CPU) as first:
        ray.get(f.remote(0))
    ray.get([f.remote(i) for i in range(20)])  # warm: every worker started
    n_seq = max(50, tasks // 5)
    with common.timer(CPU) as seq:
        for i in range(n_seq):
            ray.get(f.remote(i))
    with common.timer(CPU) as pipe:
        ray.get([f.remote(i) for i in range(tasks)])
    return {"first_task_seconds": round(first["seconds"], 3), "sequential_tasks": n_seq,
            "sequential_ms": round(1e3 * seq["seconds"] / n_seq, 3), "pipelined_tasks": tasks,
            "pipelined_ms": round(1e3 * pipe["seconds"] / tasks, 3)}


def shipping(ray, archs: list[str], data_spec) -> dict:
    """Seconds to put each architecture's state dict and to receive it in a task."""
    from fvlib import models
    import torch
    size = ray.remote(lambda state: sum(t.numel() for t in state.values()))
    with common.timer(CPU) as warm:  # the worker imports torch to unpickle tensors: once per worker
        ray.get(size.remote({"x": torch.zeros(1)}))
    out = {"first_tensor_task_seconds": round(warm["seconds"], 3)}
    for arch in archs:
        state = models.build(arch, 10, data_spec.mean, data_spec.std).state_dict()
        with common.timer(CPU) as put:
            ref = ray.put(state)
        with common.timer(CPU) as ship:
            ray.get(size.remote(ref))
        out[arch] = {"mbytes": round(nbytes(state) / 2**20, 2), "put_seconds": round(put["seconds"], 3),
                     "ship_seconds": round(ship["seconds"], 3)}
    return out


def local_instance(ray, cpus: int, tasks: int, archs: list[str], spec) -> dict:
    """Start, measure and stop a local instance."""
    with common.timer(CPU) as start:
        ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, object_store_memory=200 * 2**20)
    try:
        res = {"local_start_seconds": round(start["seconds"], 2), **task_overhead(ray, tasks),
               "object_store": shipping(ray, archs, spec)}
    finally:
        with common.timer(CPU) as stop:
            ray.shutdown()
    return {**res, "shutdown_seconds": round(stop["seconds"], 2)}


def two_node_cluster(ray) -> dict:
    """Start a simulated two-node cluster, run a task pinned to each node, stop it."""
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    lean = {"num_cpus": 1, "include_dashboard": False, "no_monitor": True, "include_log_monitor": False}
    with common.timer(CPU) as start:
        cluster = Cluster(initialize_head=True, head_node_args=lean)
        second = cluster.add_node(num_cpus=1)
        cluster.connect()
    try:
        f = ray.remote(lambda: ray.get_runtime_context().get_node_id())
        nodes = [cluster.head_node.node_id, second.node_id]
        with common.timer(CPU) as run:
            seen = ray.get([f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
                            for n in nodes])
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"cluster_start_seconds": round(start["seconds"], 2), "task_per_node_seconds": round(run["seconds"], 3),
            "task_ran_on_each_node": seen == nodes}


def table1(ray, profile, cpus: int, methods: list[str], trials: int | None, unit_cpus: int | None) -> dict:
    """The class-wise Table 1 serially, then through executor.Ray on a local instance (empty caches)."""
    import copy
    from fvlib import config, executor, study
    from fvlib.experiment import Experiment
    data = config.load_data(profile)
    ex = Experiment(profile, data, *common.theta_o(profile, data))
    ids = list(range(trials or profile.trials))
    out = {"methods": methods, "trials": len(ids), "unit_cpus": unit_cpus, "loadavg_serial": os.getloadavg()}
    with common.scratch_cache(), common.timer(CPU) as serial:
        one = study.run_study(ex, "classwise", methods, ids, progress=False)
    out["loadavg_ray"] = os.getloadavg()
    with common.timer(CPU) as start:
        ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False)
    try:
        on_ray = copy.copy(ex)
        on_ray.executor = executor.Ray(unit_cpus=unit_cpus)
        with common.scratch_cache(), common.timer(CPU) as clustered:
            two = study.run_study(on_ray, "classwise", methods, ids, progress=False)
        # the same table again on the same instance, from another empty cache: Ray's workers are
        # now started and have imported torch and fvlib, so this is the per-unit overhead alone
        with common.scratch_cache(), common.timer(CPU) as warm:
            study.run_study(on_ray, "classwise", methods, ids, progress=False)
    finally:
        ray.shutdown()
    a, b = one.set_index("key"), two.set_index("key")
    same = set(a.index) == set(b.index)
    metrics = ["UA", "RA", "TA", "MIA", "MIA_loss"]
    diff = float((a[metrics] - b.loc[a.index, metrics]).abs().max().max()) if same else None
    return {**out, "records": len(one), "serial_seconds": round(serial["seconds"], 1),
            "ray_seconds": round(clustered["seconds"], 1), "ray_start_seconds": round(start["seconds"], 1),
            "ratio": round(clustered["seconds"] / serial["seconds"], 3),
            "ray_warm_seconds": round(warm["seconds"], 1),
            "ratio_warm_workers": round(warm["seconds"] / serial["seconds"], 3),
            "ratio_with_start": round((clustered["seconds"] + start["seconds"]) / serial["seconds"], 3),
            "same_keys": same, "max_metric_difference": diff, "loadavg_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local instance")
    p.add_argument("--tasks", type=int, default=500, help="no-op tasks submitted together")
    p.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster")
    p.add_argument("--no-table", action="store_true", help="skip Table 1 serially vs on Ray")
    p.add_argument("--table-trials", type=int, default=None, help="trials of Table 1 (default: the profile's)")
    p.add_argument("--table-methods", default=None, help="methods of Table 1 (default: all, comma-separated)")
    p.add_argument("--unit-cpus", type=int, default=None, help="executor.Ray(unit_cpus=...) (default: its own)")
    args = p.parse_args(argv)
    profile = common.load_profile(args.profile)
    from fvlib.data import DATASETS
    spec = DATASETS[profile.dataset]
    names = sorted(n for _i, n in socket.if_nameindex())
    result = {"network": "loopback-only namespace" if names == ["lo"] else f"host network {names}",
              "loadavg_before": [round(x, 2) for x in os.getloadavg()], "cpus": args.cpus}
    tmp = tempfile.mkdtemp(prefix="fvray-", dir="/tmp")
    os.environ.update(ENV, RAY_TMPDIR=tmp)  # and workers import this checkout's fvlib:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.ROOT), os.environ.get("PYTHONPATH")]))
    try:
        with common.timer(CPU) as imp:
            import ray
        result.update(ray_version=ray.__version__, import_seconds=round(imp["seconds"], 2))
        archs = list(dict.fromkeys([profile.model, "resnet18"]))
        result.update(local_instance(ray, args.cpus, args.tasks, archs, spec))
        if not args.no_cluster:
            result.update(two_node_cluster(ray))
        if not args.no_table:
            from fvlib.systems import METHOD_ORDER
            methods = args.table_methods.split(",") if args.table_methods else list(METHOD_ORDER)
            result["table1"] = table1(ray, profile, args.cpus, methods, args.table_trials, args.unit_cpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    import torch
    path = common.write_result("ray_overhead", profile, torch.device("cpu"), result)
    common.summary("ray_overhead", path, start_s=result["local_start_seconds"],
                   seq_ms=result["sequential_ms"], pipelined_ms=result["pipelined_ms"],
                   cluster_start_s=result.get("cluster_start_seconds"), network=result["network"],
                   table1_ratio=result.get("table1", {}).get("ratio"))
    return result


if __name__ == "__main__":
    main()
