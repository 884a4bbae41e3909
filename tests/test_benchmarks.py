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


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18"])
def test_folded_batch_norm_is_the_same_function_with_no_batch_norm_left(arch, digits):
    """profile_fv's BN folding (a GPU speed variant) must compute what θ_o computes: checked on a
    network whose BN statistics and affine terms are far from the identity."""
    import torch

    from benchmarks.profile_fv import folded
    from fvlib import models
    from fvlib.data import to_float

    torch.manual_seed(0)
    net = models.build(arch, digits.num_classes, digits.spec.mean, digits.spec.std).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # running stats and affine terms of a trained θ_o
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    x = to_float(digits.test_x[:16])
    fused = folded(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # θ_o itself untouched
    with torch.no_grad():
        want, got = net(x), fused(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
