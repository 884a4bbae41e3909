"""Benchmark scripts keep what they measured when a timeout stops them part-way."""
from __future__ import annotations

import json

import pytest


def test_forget_vector_speed_keeps_the_single_solve_when_stopped_in_the_batched_one(
        tmp_path, monkeypatch, trained):
    from benchmarks import forget_vector_speed as bench
    monkeypatch.setenv("FVBENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("OUT", raising=False)
    real, calls = bench.timed_solve, []

    def stopped_at_the_third_solve(*args):  # warm-up, K = 1, then the batched solve
        calls.append(len(args[2]))
        if len(calls) == 3:
            raise SystemExit(143)  # what benchmarks.common makes of the timeout's SIGTERM
        return real(*args)
    monkeypatch.setattr(bench, "timed_solve", stopped_at_the_third_solve)
    with pytest.raises(SystemExit):
        bench.main(["smoke", "1", "--k", "2"])
    (path,) = tmp_path.glob("forget_vector_speed-smoke-*.json")
    rec = json.loads(path.read_text())
    assert calls == [1, 1, 2] and rec["measured"] == ["single"] and rec["complete"] is False
    assert rec["single"]["epochs"] == 1 and rec["single"]["seconds"] > 0 and "batched" not in rec
    assert set(rec["single"]["class0_percent"]) >= {"UA", "RA", "TA"}
