"""Forget vectors: a solved δ forgets, batched solves match, arithmetic, wrapping, safe files, CU-FV."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fvlib import config, metrics, splits, solve
from fvlib.forget_vector import ForgetVector, ForgetVectorError, combine

CFG = config.get_profile("smoke").fv


@pytest.fixture(scope="module")
def many(digits, original):
    """Class-wise vectors for classes 1, 2, 3 solved together."""
    return solve.solve_many(original, digits, [splits.classwise(digits, k) for k in (1, 2, 3)], CFG,
                            progress=False)


@pytest.fixture(scope="module")
def single(digits, original):
    return solve.solve(original, digits, splits.classwise(digits, 3), CFG, progress=False)


def test_solved_vector_forgets_and_keeps_utility(digits, original, single):
    s = splits.classwise(digits, 3)
    before = metrics.evaluate(original, digits, s, mia=None)
    after = metrics.evaluate(original, digits, s, single.delta)
    assert before["UA"] < 0.05
    assert after["UA"] >= 0.9
    assert after["RA"] >= before["RA"] - 0.1 and after["TA"] >= before["TA"] - 0.1
    assert after["MIA"] > 0.5
    log = single.meta["log"]
    assert len(log) == CFG.epochs and {"l_f", "l_r", "l_d", "delta_l2", "delta_linf", "at_tau"} <= set(log[0])
    assert log[-1]["at_tau"] > log[0]["at_tau"]  # more forget samples pushed to the −τ floor


def test_batched_vectors_match_separate_solves(digits, original, many, single):
    for k, fv in zip((1, 2, 3), many):
        ua = metrics.evaluate(original, digits, splits.classwise(digits, k), fv.delta, mia=None)["UA"]
        assert ua >= 0.9, (k, ua)
    s3 = splits.classwise(digits, 3)
    ua_many = metrics.evaluate(original, digits, s3, many[2].delta, mia=None)["UA"]
    ua_single = metrics.evaluate(original, digits, s3, single.delta, mia=None)["UA"]
    assert abs(ua_many - ua_single) <= 0.05
    assert many[2].meta["forget"]["trial"] == 3 and many[0].meta["forget"]["hash"] != many[1].meta["forget"]["hash"]


def test_model_is_frozen_and_restored(digits, original, many):
    assert all(p.requires_grad for p in original.parameters())
    assert not original.training


def test_arithmetic_identities(many):
    a, b = many[0], many[1]
    assert torch.allclose((a + b - b).delta, a.delta, atol=1e-6)
    assert torch.allclose((2 * a).delta, (a + a).delta)
    assert torch.allclose(sum([a, b]).delta, (a + b).delta)
    assert torch.allclose(combine([a, b], [0.5, -1.0]).delta, 0.5 * a.delta - b.delta)
    assert torch.allclose((-a).delta, -a.delta)
    assert (0.5 * a + b).meta["forget"]["combination"][0][0] == 0.5


def test_wrap_equals_model_on_x_plus_delta(digits, original, single):
    x = digits.test_x[:16].permute(0, 3, 1, 2).float() / 255
    wrapped = single.wrap(original).eval()
    with torch.no_grad():
        assert torch.allclose(wrapped(x), original(x + single.delta), atol=1e-5)
        assert torch.allclose(single.apply(x), x + single.delta)


def test_save_load_round_trip(single, tmp_path):
    path = single.save(tmp_path / "fv.safetensors")
    back = ForgetVector.load(path, image_shape=(3, 32, 32), dataset="digits")
    assert torch.equal(back.delta, single.delta)
    assert back.meta["forget"] == single.meta["forget"] and back.meta["config"] == single.meta["config"]
    assert back.meta["model"] == single.meta["model"] and back.meta["dataset"] == "digits"


def test_bad_files_and_shapes_raise(single, tmp_path):
    path = single.save(tmp_path / "fv.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable fvlib safetensors file"):
        ForgetVector.load(truncated)
    with pytest.raises(ForgetVectorError, match=r"shape \(3, 32, 32\).*needs \(3, 224, 224\)"):
        ForgetVector.load(path, image_shape=(3, 224, 224))
    with pytest.raises(ForgetVectorError, match="solved on digits, not cifar10"):
        ForgetVector.load(path, dataset="cifar10")
    other = ForgetVector(torch.zeros(3, 16, 16))
    with pytest.raises(ForgetVectorError, match="different image sizes"):
        single + other
    with pytest.raises(ForgetVectorError, match=r"shape \(3, H, W\)"):
        ForgetVector(torch.zeros(32, 32))


def test_nan_loss_stops_with_a_clear_error(digits, original):
    bad = dataclasses.replace(CFG, lr=1e38, epochs=3)
    with pytest.raises(FloatingPointError, match="lower lr"):
        solve.solve(original, digits, splits.classwise(digits, 0), bad, progress=False)


def test_paper_objective_gives_a_smaller_vector(digits, original, single):
    paper = dataclasses.replace(CFG, objective="paper")
    fv = solve.solve(original, digits, splits.classwise(digits, 3), paper, progress=False)
    assert fv.norm < single.norm
    with pytest.raises(ValueError, match="valid: code, paper"):
        solve.solve(original, digits, splits.classwise(digits, 3),
                    dataclasses.replace(CFG, objective="adam", epochs=1), progress=False)


def test_compositional_unlearning_learns_weights(digits, original, many):
    union = splits.forget_classes(digits, [1, 2])
    (fv, w), = solve.compose(original, digits, [union], many[:2], CFG, progress=False)
    assert w.shape == (2,) and (w > 0.2).all()
    res = metrics.evaluate(original, digits, union, fv.delta, mia=None)
    assert res["UA"] >= 0.6 and res["TA"] >= 0.8  # from UA ≈ 0 without a vector
    assert fv.meta["weights"] == pytest.approx(w.tolist())


def test_margins():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert solve.margins(z, torch.tensor([0, 0])).tolist() == [1.0, -5.0]


def test_per_class_beta_table():
    cfg = dataclasses.replace(CFG, beta_per_class=solve.CIFAR10_CLASS_BETA)
    fake = [splits.Split("classwise", k, torch.zeros(1, dtype=torch.bool), torch.ones(1, dtype=torch.bool),
                         torch.zeros(1, dtype=torch.bool)) for k in (0, 9)]
    assert cfg.betas(fake) == [3.0, 10.0] and CFG.betas(fake) == [3.0, 3.0]
