"""Metrics: MIA attack direction, the threshold attack, Avg.Gap, accuracy over sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fvlib import metrics, mia, splits, train


def test_svc_mia_direction():
    g = torch.Generator().manual_seed(0)
    members = 0.9 + 0.1 * torch.rand(400, generator=g)      # confident on training data
    nonmembers = 0.3 + 0.4 * torch.rand(400, generator=g)
    like_members = 0.9 + 0.1 * torch.rand(100, generator=g)
    like_nonmembers = 0.3 + 0.4 * torch.rand(100, generator=g)
    members, nonmembers, like_members, like_nonmembers = (
        v.numpy() for v in (members, nonmembers, like_members, like_nonmembers))
    assert mia.svc_mia(members, nonmembers, like_nonmembers) > 0.9
    assert mia.svc_mia(members, nonmembers, like_members) < 0.1
    loss = lambda p: -np.log(p)  # noqa: E731
    assert mia.threshold_mia(loss(members), loss(nonmembers), loss(like_nonmembers)) > 0.9
    assert mia.threshold_mia(loss(members), loss(nonmembers), loss(like_members)) < 0.1


def test_threshold_attack_sees_no_difference_between_identical_distributions():
    """Balanced random draws: 45k vs 10k losses from one distribution are not separable (the
    earlier stride-and-truncate draw dropped the highest-loss members: advantage 0.11)."""
    r = np.random.RandomState(0)
    assert mia.threshold_advantage(r.exponential(size=45_000), r.exponential(size=10_000)) < 0.03
    assert mia.threshold_advantage(r.exponential(size=45_000), 3 + r.exponential(size=10_000)) > 0.9


def test_svc_mia_subsampling_option():
    g = torch.Generator().manual_seed(1)
    m, n = (0.9 + 0.1 * torch.rand(2000, generator=g)).numpy(), (0.2 * torch.rand(2000, generator=g)).numpy()
    cfg = metrics.MIAConfig(max_per_side=200)
    assert mia.svc_mia(m, n, n[:50], cfg) > 0.9


def test_model_without_class_scores_higher_mia(digits, original):
    k = 4
    s = splits.classwise(digits, k)
    cfg = train.TrainConfig(epochs=10, batch_size=128, lr=0.1, schedule="onecycle")
    retrained, _ = train.train_cached("small_cnn", digits, s.retain, cfg, progress=False)
    orig = metrics.evaluate(original, digits, s)
    retr = metrics.evaluate(retrained, digits, s)
    assert retr["UA"] == 1.0 and orig["UA"] < 0.05
    assert retr["MIA"] > orig["MIA"] + 0.5
    # MIA_loss is not compared: on digits the loss threshold separates retain from test no better
    # than chance (advantage 0.04 at n = 405, chance bound 0.086), so it is NaN for both.
    assert 0.0 <= orig["MIA_power"] <= 1.0 and 0.0 <= retr["MIA_power"] <= 1.0


def test_avg_gap():
    a = {"UA": 1.0, "MIA": 1.0, "RA": 0.9, "TA": 0.8}
    assert metrics.avg_gap(a, a) == 0.0
    b = {"UA": 0.0, "MIA": 1.0, "RA": 1.0, "TA": 0.8}
    assert abs(metrics.avg_gap(a, b) - (1.0 + 0.1) / 4) < 1e-12


def test_accuracy_and_per_class(digits, original):
    acc = metrics.accuracy(original, digits.test_x, digits.test_y)
    per = metrics.per_class_accuracy(original, digits.test_x, digits.test_y, 10)
    counts = torch.bincount(digits.test_y).numpy()
    assert abs((per * counts).sum() / counts.sum() - acc) < 1e-6
    assert metrics.accuracy(original, digits.test_x[:0], digits.test_y[:0]) != metrics.accuracy(
        original, digits.test_x[:0], digits.test_y[:0])  # NaN for an empty set


class _Broken(nn.Module):
    def forward(self, x):
        return torch.full((len(x), 10), float("nan"))


def test_non_finite_logits_raise_a_clear_error(digits):
    with pytest.raises(FloatingPointError, match="non-finite logits"):
        metrics.evaluate(_Broken(), digits, splits.classwise(digits, 0))


def test_evaluate_rejects_a_split_of_other_data(digits, original):
    s = splits.classwise(digits, 0)
    with pytest.raises(splits.SplitError, match="built for other data"):
        metrics.evaluate(original, digits.subset(300, 100), s)


def test_attack_reports_its_own_power_beside_an_unchanged_mia():
    """MIA_power: the SVC's held-out balanced accuracy on members vs non-members (0.5 = none)."""
    r = np.random.RandomState(0)
    same = r.rand(1000)
    feats = {"p_retain": same, "p_test": r.rand(1000), "p_forget": r.rand(200),
             "l_retain": -np.log(same), "l_test": -np.log(r.rand(1000)), "l_forget": r.rand(200)}
    out = mia.attack(feats, mia.MIAConfig())
    assert abs(out["MIA_power"] - 0.5) < 0.06  # one distribution: the attack cannot tell
    assert out["MIA"] == mia.svc_mia(feats["p_retain"], feats["p_test"], feats["p_forget"])
    apart = {**feats, "p_retain": 0.9 + 0.1 * r.rand(1000), "p_test": 0.5 * r.rand(1000)}
    assert mia.attack(apart, mia.MIAConfig())["MIA_power"] > 0.95
    assert np.isnan(mia.svc_power(r.rand(1), r.rand(1)))  # too few samples to hold any out


def test_threshold_attack_without_power_reports_nan():
    """Identical members and non-members: advantage 0, so 'share above the threshold' means nothing."""
    x = np.random.RandomState(0).rand(1000)
    assert mia.threshold_advantage(x, x.copy()) == 0.0
    assert np.isnan(mia.threshold_mia(x, x.copy(), x))
    r = np.random.RandomState(1)  # two draws of one distribution: an advantage within chance
    assert np.isnan(mia.threshold_mia(r.exponential(size=5000), r.exponential(size=5000), x))
    assert mia.threshold_mia(r.exponential(size=5000), 1 + r.exponential(size=5000), 2 + x) == 1.0
