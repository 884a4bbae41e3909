"""tools/cost_plan.py: list scheduling on small graphs, where unit costs come from, and the committed
docs/cost_plan.md is what the script writes now."""
from __future__ import annotations

import json
import sys

import pytest

from fvlib.paths import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import cost_plan  # noqa: E402
from cost_plan import Task, schedule  # noqa: E402


def graph() -> list[Task]:
    """a (GPU 2 s) -> b (GPU 3 s) -> d (CPU 1 s); c (GPU 4 s) alone."""
    return [Task("a", "x", True, 2.0), Task("b", "x", True, 3.0, (0,)), Task("c", "x", True, 4.0),
            Task("d", "x", False, 1.0, (1,))]


@pytest.mark.parametrize("gpus, makespan", [(1, 9.0), (2, 6.0), (8, 6.0)])
def test_list_scheduling(gpus, makespan):
    # 1 GPU: a, b, c back to back (d runs on the CPU beside c); 2 GPUs: a -> b -> d beside c
    assert schedule(graph(), gpus, cpus=1) == makespan


def test_the_longest_path_goes_first():
    # 1 GPU, 1 CPU: e (GPU 1 s) -> f (CPU 5 s) and g (GPU 1 s). e first: g runs while f does (6 s);
    # g first would give 7 s.
    tasks = [Task("g", "x", True, 1.0), Task("e", "x", True, 1.0), Task("f", "x", False, 5.0, (1,))]
    assert schedule(tasks, gpus=1, cpus=1) == 6.0


def test_chunks_interpolate_the_measured_batched_solves():
    costs = cost_plan.costs_of("fvlib", "cifar10")
    assert cost_plan.chunk_seconds(costs, "classwise", 1) == costs["fv1/classwise"].seconds
    assert cost_plan.chunk_seconds(costs, "classwise", 10) == pytest.approx(costs["fv10/classwise"].seconds)


def test_gpu_benchmark_jsons_replace_the_quoted_numbers(tmp_path):
    def write(name, **rec):
        (tmp_path / name).write_text(json.dumps(rec))
    write("train_speed-quick-nvidia-h200.json", benchmark="train_speed", profile="quick",
          device="NVIDIA H200", train_images_per_s=50_000.0)
    write("train_speed-smoke-cpu.json", benchmark="train_speed", profile="smoke",
          device="cpu (x86_64, 2 threads)", train_images_per_s=5_930.0)
    write("forget_vector_speed-quick-nvidia-h200.json", benchmark="forget_vector_speed", profile="quick",
          device="NVIDIA H200", single={"est_seconds_full": 40.0}, batched={"k": 10, "est_seconds_full": 200.0})
    m = cost_plan.measured(tmp_path)
    assert m["train_images_per_s"] == (50_000.0, "train_speed-quick-nvidia-h200.json, NVIDIA H200")
    assert m["fv_k1_seconds"][0] == 40.0 and m["fv_k10_seconds"][0] == 200.0
    assert cost_plan.measured(tmp_path / "none")["train_images_per_s"] == (45_000.0, cost_plan.QUOTED)


def test_more_gpus_never_slower_and_never_below_the_bound():
    rows = [cost_plan.plan("fvlib", "CIFAR-10, Table 1", n, 4) for n in (1, 8, 32)]
    assert rows[0]["wall_h"] >= rows[1]["wall_h"] >= rows[2]["wall_h"]
    assert all(r["wall_h"] >= r["bound_h"] - 1e-9 for r in rows)


def test_committed_cost_plan_is_current():
    assert (ROOT / "docs" / "cost_plan.md").read_text() == cost_plan.report([1, 8, 32], 4), \
        "docs/cost_plan.md is stale: python tools/cost_plan.py --write docs/cost_plan.md"
