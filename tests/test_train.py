"""Trainer: the small CNN learns digits, cached models reload identically, augmentations behave."""
from __future__ import annotations

import pytest
import torch

from fvlib import augment, config, metrics, train
from fvlib.runtime import generator


def test_small_cnn_reaches_90_percent(digits, original):
    assert metrics.accuracy(original, digits.test_x, digits.test_y) >= 0.90


def test_cache_hit_returns_identical_weights_without_training(digits, original, monkeypatch):
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("retrained on a cache hit"))
    again, info = train.train_original("small_cnn", digits, config.get_profile("smoke").train)
    assert info["cache_hit"]
    for (k, a), b in zip(original.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_training_on_a_mask_never_sees_the_rest(digits):
    cfg = train.TrainConfig(epochs=4, batch_size=128, lr=0.1, schedule="onecycle")
    model, info = train.train_cached("small_cnn", digits, digits.train_y != 3, cfg, progress=False)
    acc3 = metrics.accuracy(model, digits.test_x[digits.test_y == 3], digits.test_y[digits.test_y == 3])
    assert acc3 == 0.0 and not info["cache_hit"]
    assert len(info["log"]) == 4 and info["log"][-1]["lr"] < info["log"][0]["lr"]


def test_schedules():
    p = torch.nn.Parameter(torch.zeros(1))
    paper = train.TrainConfig()
    opt = train.make_optimizer([p], paper)
    sched = train.make_scheduler(opt, paper, steps_per_epoch=2)
    lrs = []
    for _ in range(160 * 2):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.1 and abs(lrs[91 * 2] - 0.01) < 1e-9 and abs(lrs[136 * 2] - 0.001) < 1e-9
    with pytest.raises(ValueError, match="unknown schedule"):
        bad = train.TrainConfig(schedule="cosine")
        train.make_scheduler(train.make_optimizer([p], bad), bad, 1).step()


def test_crop_flip_is_a_shifted_copy(digits):
    x = digits.train_x[:16]
    g = generator(0, "t")
    assert torch.equal(augment.crop_flip(x, g, pad=0, flip=False), augment.identity(x, g))
    out = augment.crop_flip(x, g)
    assert out.shape == (16, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    # every output row is a (possibly flipped) window of the zero-padded input: pixel mass is kept or cropped
    assert (out.sum((1, 2, 3)) <= augment.identity(x, g).sum((1, 2, 3)) + 1e-4).all()


@pytest.mark.parametrize("name", ["crop_flip", "translate", "resized_crop_flip", "none"])
def test_augmentations_are_batched_and_seeded(digits, name):
    x = digits.train_x[:8]
    a = augment.get(name)(x, generator(1, "aug"))
    b = augment.get(name)(x, generator(1, "aug"))
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(ValueError, match="valid names"):
        augment.get("mixup")


def test_diverged_training_stops_and_caches_nothing(digits):
    from fvlib.paths import cache_dir
    before = set(cache_dir().glob("model-*"))
    cfg = train.TrainConfig(epochs=2, batch_size=128, lr=1e30, schedule="onecycle", seed=7)
    with pytest.raises(FloatingPointError, match="diverged"):
        train.train_cached("small_cnn", digits, digits.train_y >= 0, cfg, progress=False)
    assert set(cache_dir().glob("model-*")) == before


def test_theta_o_log_reports_train_and_test_accuracy(trained):
    last = trained[1]["log"][-1]
    assert 0.9 < last["train_acc"] <= 1.0 and 0.9 < last["test_acc"] <= 1.0


def test_a_one_cycle_schedule_of_one_step_trains_at_the_peak():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = train.TrainConfig(epochs=1, lr=0.1, schedule="onecycle")
    opt = train.make_optimizer([p], cfg)
    sched = train.make_scheduler(opt, cfg, steps_per_epoch=1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # the only step is not wasted at lr 0
    opt.step()
    sched.step()  # was a ZeroDivisionError
    assert opt.param_groups[0]["lr"] == 0.0
