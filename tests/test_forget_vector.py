"""Forget vectors: the objective pinned by hand, a solved δ forgets, batched == separate (tensors),
the frozen model is restored, arithmetic, wrapping (with clamp), safe files, bad input, CU-FV."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from fvlib import config, metrics, splits, solve
from fvlib.forget_vector import ForgetVector, ForgetVectorError, Perturbed, combine

CFG = config.get_profile("smoke").fv


@pytest.fixture(scope="module")
def many(digits, original):
    """Class-wise vectors for classes 1, 2, 3 solved together."""
    return solve.solve_many(original, digits, [splits.classwise(digits, k) for k in (1, 2, 3)], CFG,
                            progress=False)


@pytest.fixture(scope="module")
def single(digits, original):
    return solve.solve(original, digits, splits.classwise(digits, 3), CFG, progress=False)


# ----------------------------------------------------------------------------- the objective, by hand

Z = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0], [2.0, 2.5, 0.0]]])  # (K=1, B=4, C=3)
Y = torch.tensor([0, 1, 2, 1])
F = torch.tensor([[True, False, False, True]])   # samples 0 and 3 are forget samples
NORM = torch.tensor([2.0])
# margins: 3-1=2, 2-1=1, 4-1=3, 2.5-2=0.5; forget terms max(m, -τ) with τ=1: 2, 0.5
CE = [math.log(math.exp(3) + math.exp(1) + 1) - 3, math.log(1 + math.exp(2) + math.exp(1)) - 2,
      math.log(math.exp(1) + 1 + math.exp(4)) - 4, math.log(math.exp(2) + math.exp(2.5) + 1) - 2.5]


def test_code_objective_matches_hand_computation():
    cfg = dataclasses.replace(CFG, objective="code", alpha=2.0, beta=3.0, lambda_norm=5.0, tau=1.0)
    loss, parts = solve.batch_loss(Z, Y, F, NORM, torch.tensor([3.0]), cfg)
    l_f, l_r, l_d = (2 + 0.5) / 4, (CE[1] + CE[2]) / 4, 2.0 / 4   # sums over the batch / B
    assert parts["l_f"].item() == pytest.approx(l_f)
    assert parts["l_r"].item() == pytest.approx(l_r)
    assert loss.item() == pytest.approx(2.0 * l_r + 3.0 * l_f + 5.0 * l_d)


def test_paper_objective_matches_hand_computation():
    cfg = dataclasses.replace(CFG, objective="paper", lambda1=3.0, lambda2=0.5, tau=1.0)
    loss, parts = solve.batch_loss(Z, Y, F, NORM, torch.tensor([7.0]), cfg)  # Beta is ignored
    l_f, l_r = (2 + 0.5) / 2, (CE[1] + CE[2]) / 2                             # per-side means
    assert parts["l_f"].item() == pytest.approx(l_f)
    assert loss.item() == pytest.approx(l_f + 3.0 * l_r + 0.5 * 2.0)


def test_tau_floors_the_forget_margin():
    cfg = dataclasses.replace(CFG, objective="code", alpha=0.0, lambda_norm=0.0, tau=0.2)
    z = torch.tensor([[[0.0, 5.0, 0.0]]])                     # margin of label 0 is -5
    loss, _ = solve.batch_loss(z, torch.tensor([0]), torch.tensor([[True]]), torch.zeros(1),
                               torch.ones(1), cfg)
    assert loss.item() == pytest.approx(-0.2)


def test_distill_objective_uses_kl_to_predictions_without_delta():
    cfg = dataclasses.replace(CFG, objective="distill", alpha=1.0, beta=0.0, lambda_norm=0.0)
    loss_same, _ = solve.batch_loss(Z, Y, F, NORM, torch.zeros(1), cfg, z0=Z[0])
    assert loss_same.item() == pytest.approx(0.0, abs=1e-6)   # δ keeps θ_o's predictions: no cost
    z0 = Z[0].flip(-1)
    loss, _ = solve.batch_loss(Z, Y, F, NORM, torch.zeros(1), cfg, z0=z0)
    p, q = z0.softmax(-1), Z[0].softmax(-1)
    kl = (p * (p.log() - q.log())).sum(-1)
    assert loss.item() == pytest.approx((kl[1] + kl[2]).item() / 4, rel=1e-5)


def test_unknown_objective_lists_the_registry(digits, original):
    with pytest.raises(ValueError, match="valid: code, paper, distill"):
        solve.solve(original, digits, splits.classwise(digits, 3),
                    dataclasses.replace(CFG, objective="adam", epochs=1), progress=False)


# ----------------------------------------------------------------------------- solving

def test_solved_vector_forgets_and_keeps_utility(digits, original, single):
    s = splits.classwise(digits, 3)
    before = metrics.evaluate(original, digits, s, mia=None)
    after = metrics.evaluate(single.wrap(original), digits, s)
    assert before["UA"] < 0.05
    assert after["UA"] >= 0.9
    assert after["RA"] >= before["RA"] - 0.1 and after["TA"] >= before["TA"] - 0.1
    assert after["MIA"] > 0.5
    log = single.meta["log"]
    assert len(log) == CFG.epochs and {"l_f", "l_r", "l_d", "delta_l2", "delta_linf", "at_tau"} <= set(log[0])
    assert log[-1]["at_tau"] > log[0]["at_tau"]  # more forget samples pushed to the −τ floor


def test_batched_vectors_equal_separate_solves(digits, original, many, single):
    """K problems share batches but not gradients: the batched δ_3 is the separately solved δ_3.

    A (K·B)-image forward runs other CPU kernels than a B-image one, and SGD carries their last-bit
    differences through the epochs: compare relative ℓ2 distances. A gradient leaking between
    problems moves δ by O(1) (δ_1 vs δ_3 here: about 1.3)."""
    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())
    assert rel(many[2].delta, single.delta) < 1e-3, rel(many[2].delta, single.delta)
    assert rel(many[0].delta, many[2].delta) > 0.1
    assert many[2].meta["forget"]["trial"] == 3 and many[0].meta["forget"]["hash"] != many[1].meta["forget"]["hash"]
    assert many[0].meta["solved_together"] == 3 and single.meta["solved_together"] == 1


def test_solving_restores_a_training_model(digits, original):
    model = copy.deepcopy(original).train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    flags = [p.requires_grad for p in model.parameters()]
    solve.solve(model, digits, splits.classwise(digits, 0), dataclasses.replace(CFG, epochs=1), progress=False)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is not None and torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_bad_solve_inputs_raise(digits, original):
    s = splits.classwise(digits, 0)
    with pytest.raises(ValueError, match="epochs and batch_size must be >= 1"):
        solve.solve(original, digits, s, dataclasses.replace(CFG, epochs=0), progress=False)
    with pytest.raises(ValueError, match="no forget sets given"):
        solve.solve_many(original, digits, [], CFG, progress=False)
    small = digits.subset(300, 100)
    with pytest.raises(splits.SplitError, match="built for other data"):
        solve.solve(original, small, s, CFG, progress=False)


def test_nan_loss_stops_with_a_clear_error(digits, original):
    bad = dataclasses.replace(CFG, lr=1e38, epochs=3)
    with pytest.raises(FloatingPointError, match="lower lr"):
        solve.solve(original, digits, splits.classwise(digits, 0), bad, progress=False)


def test_paper_objective_gives_a_smaller_vector(digits, original, single):
    paper = dataclasses.replace(CFG, objective="paper")
    fv = solve.solve(original, digits, splits.classwise(digits, 3), paper, progress=False)
    assert fv.norm < single.norm


def test_compositional_unlearning_learns_weights(digits, original, many):
    union = splits.forget_classes(digits, [1, 2])
    (fv, w), = solve.compose(original, digits, [union], many[:2], CFG, progress=False)
    assert w.shape == (2,) and (w > 0.2).all()
    res = metrics.evaluate(fv.wrap(original), digits, union, mia=None)
    assert res["UA"] >= 0.6 and res["TA"] >= 0.8  # from UA ≈ 0 without a vector
    assert fv.meta["weights"] == pytest.approx(w.tolist())


# ----------------------------------------------------------------------------- the object

def test_arithmetic_identities(many):
    a, b = many[0], many[1]
    assert torch.allclose((a + b - b).delta, a.delta, atol=1e-6)
    assert torch.allclose((2 * a).delta, (a + a).delta)
    assert torch.allclose(sum([a, b]).delta, (a + b).delta)
    assert torch.allclose(combine([a, b], [0.5, -1.0]).delta, 0.5 * a.delta - b.delta)
    assert torch.allclose((-a).delta, -a.delta)
    assert (0.5 * a + b).meta["forget"]["combination"][0][0] == 0.5
    with pytest.raises(ForgetVectorError, match="wrap a raw tensor as ForgetVector"):
        a + a.delta
    with pytest.raises(ForgetVectorError, match="wrap a raw tensor as ForgetVector"):
        a - a.delta


def test_wrap_equals_model_on_x_plus_delta(digits, original, single):
    x = digits.test_x[:16].permute(0, 3, 1, 2).float() / 255
    wrapped = single.wrap(original).eval()
    with torch.no_grad():
        assert torch.allclose(wrapped(x), original(x + single.delta), atol=1e-5)
        assert torch.allclose(single.apply(x), x + single.delta)
    assert isinstance(wrapped, Perturbed) and wrapped.model is original


def test_clamp_is_used_wherever_the_vector_is_used(digits, original):
    """FVConfig(clamp=True) clips x + δ while solving AND in the deployed system."""
    cfg = dataclasses.replace(CFG, clamp=True, epochs=1)
    fv = solve.solve(original, digits, splits.classwise(digits, 0), cfg, progress=False)
    assert fv.clamp
    big = ForgetVector(torch.full((3, 32, 32), 2.0), fv.meta)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(big.wrap(original).eval()(x), original(torch.ones_like(x)), atol=1e-5)
    assert torch.equal(big.apply(x), torch.ones_like(x))
    assert not ForgetVector(torch.zeros(3, 32, 32)).clamp


def test_non_finite_delta_is_rejected(single, original, tmp_path):
    bad = single.delta.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ForgetVectorError, match="non-finite"):
        ForgetVector(bad)
    later = ForgetVector(torch.zeros_like(bad))
    later.delta.fill_(float("inf"))  # changed in place after its checks
    with pytest.raises(ForgetVectorError, match="non-finite"):
        Perturbed(original, later)
    with pytest.raises(ForgetVectorError, match="non-finite"):
        single * float("nan")
    from fvlib.cache import save_tensors
    save_tensors(tmp_path / "nan.safetensors", {"delta": bad}, {"kind": "forget_vector"})
    with pytest.raises(ForgetVectorError, match="nan.safetensors.*non-finite"):
        ForgetVector.load(tmp_path / "nan.safetensors", None)


def test_save_load_round_trip_checks_the_data(single, digits, tmp_path):
    path = single.save(tmp_path / "fv.safetensors")
    back = ForgetVector.load(path, digits)
    assert torch.equal(back.delta, single.delta)
    assert back.meta["forget"] == single.meta["forget"] and back.meta["config"] == single.meta["config"]
    assert back.meta["model"] == single.meta["model"] and back.meta["dataset"] == "digits"
    other = dataclasses.replace(digits, name="cifar10")
    with pytest.raises(ForgetVectorError, match="solved on digits, not cifar10"):
        ForgetVector.load(path, other)
    wide = dataclasses.replace(digits, train_x=torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    with pytest.raises(ForgetVectorError, match=r"shape \(3, 32, 32\).*needs \(3, 64, 64\)"):
        ForgetVector.load(path, wide)
    with pytest.raises(TypeError):
        ForgetVector.load(path)  # the data to check against is not optional


def test_bad_files_and_shapes_raise(single, tmp_path):
    path = single.save(tmp_path / "fv.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="delete it and recompute"):
        ForgetVector.load(truncated, None)
    other = ForgetVector(torch.zeros(3, 16, 16))
    with pytest.raises(ForgetVectorError, match="different image sizes"):
        single + other
    with pytest.raises(ForgetVectorError, match=r"shape \(3, H, W\)"):
        ForgetVector(torch.zeros(32, 32))


def test_margins():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert solve.margins(z, torch.tensor([0, 0])).tolist() == [1.0, -5.0]


def test_per_class_beta_table(digits):
    cfg = dataclasses.replace(CFG, beta_per_class=(3.0, 8.0, 4.0, 5.0, 5.0, 6.0, 3.0, 7.0, 4.0, 10.0))
    fake = [splits.classwise(digits, k) for k in (0, 9)]
    assert cfg.betas(fake) == [3.0, 10.0] and CFG.betas(fake) == [3.0, 3.0]
    assert config.get_profile("quick_imagenet10").fv.betas(fake) == [10.0, 5.0]


def test_project_onto_balls_by_hand():
    p = torch.tensor([[[[3.0, 4.0]]], [[[0.3, 0.4]]]])              # (K=2, 1, 1, 2): norms 5 and 0.5
    out = solve.project(p, 1.0, "l2")
    assert torch.allclose(out[0], p[0] / 5) and torch.equal(out[1], p[1])  # inside the ball: unchanged
    assert torch.equal(solve.project(p, 0.35, "linf"), p.clamp(-0.35, 0.35))


@pytest.mark.parametrize("ball", ["l2", "linf"])
def test_radius_bounds_every_vector(digits, original, many, ball):
    free = max(v.norm for v in many)
    r = 0.3 * free if ball == "l2" else 0.05
    cfg = dataclasses.replace(CFG, epochs=2, radius=r, ball=ball)
    vs = solve.solve_many(original, digits, [splits.classwise(digits, k) for k in (1, 2)], cfg, progress=False)
    for v in vs:
        size = v.delta.norm() if ball == "l2" else v.delta.abs().max()
        assert size <= r * (1 + 1e-5), (ball, float(size), r)
    assert max(float(v.delta.norm()) for v in vs) < free


def test_unaugmented_distillation_targets(digits, original):
    x = digits.train_x[:5]
    from fvlib.data import to_float
    # a 1024-image batch vs 5 images: other kernels, last-bit differences; a wrong image, order or an
    # augmented view would move logits by O(1)
    with torch.no_grad():
        assert torch.allclose(solve.unaugmented_logits(original, digits)[:5], original(to_float(x)),
                              rtol=1e-4, atol=1e-3)
    # with no augmentation the view is the un-augmented image: both target kinds give the same δ
    split = splits.classwise(digits, 2)
    base = dataclasses.replace(CFG, epochs=2, objective="distill", augment="none")
    view = solve.solve(original, digits, split, base, progress=False)
    clean = solve.solve(original, digits, split, dataclasses.replace(base, distill_targets="unaugmented"),
                        progress=False)
    # the targets come from batches of 256 (view) or 1024 (clean): last-bit differences, carried by SGD
    assert float((view.delta - clean.delta).norm() / clean.delta.norm()) < 1e-3


def test_bad_projection_and_target_settings_raise(digits, original, many):
    split = splits.classwise(digits, 2)
    for bad, match in (({"radius": 0.0}, "radius must be > 0"), ({"radius": 1.0, "ball": "l3"}, "unknown ball"),
                       ({"distill_targets": "labels"}, "unknown distill_targets")):
        with pytest.raises(ValueError, match=match):
            solve.solve(original, digits, split, dataclasses.replace(CFG, epochs=1, **bad), progress=False)
    with pytest.raises(ValueError, match="radius"):
        solve.compose(original, digits, [split], many, dataclasses.replace(CFG, epochs=1, radius=1.0),
                      progress=False)


# ----------------------------------------------------------------------------- metadata, enforced

def test_wrap_refuses_another_theta_o(digits, original, single):
    other = copy.deepcopy(original)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(ForgetVectorError, match="solved on θ_o .* not on this model"):
        single.wrap(other)
    assert single.wrap(original).model is original           # its own θ_o: fine
    assert ForgetVector(single.delta).wrap(other).model is other  # a bare δ knows no θ_o


def test_sum_metadata_rules(single, many):
    alien = ForgetVector(single.delta, {**single.meta, "model": "0000000000000000"})
    for a, b in ((single, alien), (alien, single)):
        with pytest.raises(ForgetVectorError, match="different θ_o"):
            a + b
    cifar = ForgetVector(single.delta, {"dataset": "cifar10"})
    bare = ForgetVector(torch.zeros_like(single.delta))
    assert (bare + cifar).meta["dataset"] == (cifar + bare).meta["dataset"] == "cifar10"
    clamped = ForgetVector(single.delta, {**single.meta, "clamp": True})
    for a, b in ((single, clamped), (clamped, single)):  # the same answer in either order
        with pytest.raises(ForgetVectorError, match="different clamp settings"):
            a + b
    assert (bare + clamped).clamp and (clamped + bare).clamp and (2 * clamped).clamp
    both = many[0] + many[1]
    assert both.meta["model"] == many[0].meta["model"] and both.meta["config"] == many[0].meta["config"]


def test_a_delta_of_another_image_shape_is_never_broadcast(digits, original):
    tiny = ForgetVector(torch.full((3, 1, 1), 0.1))
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ForgetVectorError, match=r"image shape \(3, 1, 1\) cannot perturb images of shape"):
        tiny.wrap(original)(x)
    with pytest.raises(ForgetVectorError, match="cannot perturb"):
        tiny.apply(x)


def test_the_wrapped_theta_o_runs_in_eval_mode_and_stays_unchanged(digits, original, single):
    theta = copy.deepcopy(original).train()  # a θ_o left in train mode: BN would update its statistics
    fv = ForgetVector(single.delta)
    before = {k: v.clone() for k, v in theta.state_dict().items()}
    x = digits.test_x[:32].permute(0, 3, 1, 2).float() / 255
    system = fv.wrap(theta)
    with torch.no_grad():
        out = system(x)
        system.train()(x)  # the system's mode does not reach θ_o either
    assert all(torch.equal(v, before[k]) for k, v in theta.state_dict().items())
    assert theta.training and all(m.training for m in theta.modules())  # its own mode is restored
    with torch.no_grad():
        assert torch.allclose(out, copy.deepcopy(original).eval()(x + single.delta), atol=1e-5)


def test_a_vector_where_a_system_is_expected(digits, single):
    split = splits.classwise(digits, 3)
    with pytest.raises(TypeError, match=r"ForgetVector: pass fv.wrap\(θ_o\)"):
        metrics.evaluate(single, digits, split)


def test_a_model_of_another_class_count_is_named(digits, original):
    few = torch.nn.Sequential(original, torch.nn.Linear(10, 4))
    with pytest.raises(ValueError, match="returns 4 logits per image but digits has 10 classes"):
        metrics.evaluate(few, digits, splits.classwise(digits, 3), mia=None)
