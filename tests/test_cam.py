"""Grad-CAM wrapper (fvlib.cam): shapes, state hygiene, forget-vector plumbing, panel figure."""
from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from fvlib import cam, data as fvdata, models
from fvlib.train import TrainConfig, train_original

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@pytest.fixture(scope="module")
def digits():
    return fvdata.load("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A small_cnn trained for a few seconds on digits (cached in a throwaway folder)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FVLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = TrainConfig(epochs=3, batch_size=128, lr=0.1, schedule="onecycle")
        model, _ = train_original("small_cnn", digits, cfg, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def batch(digits):
    return digits.test_x[:6], digits.test_y[:6]


def _untrained(arch: str, digits) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build(arch, 10, digits.spec.mean, digits.spec.std).eval()


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not getattr(m, d) for m in model.modules() for d in HOOK_DICTS)


def _state(model: torch.nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("arch,size,n", [("small_cnn", 32, 6), ("resnet18", 32, 2), ("vgg16_bn", 112, 1)])
def test_maps_shape_and_range(arch, size, n, trained, digits):
    model = trained if arch == "small_cnn" else _untrained(arch, digits)
    x = digits.test_x[:n]
    if size != 32:  # upsample the digits so VGG's four pools leave a 7x7 map
        x = torch.nn.functional.interpolate(fvdata.to_float(x), size=(size, size), mode="bilinear")
    maps = cam.gradcam(model, x, arch)
    assert maps.shape == (n, size, size) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert _no_hooks(model)


def test_trained_maps_are_informative_and_match_predictions(trained, batch):
    x, _ = batch
    maps, logits = cam.cam_and_logits(trained, x, "small_cnn")
    assert (maps.amax(dim=(1, 2)) > 0.99).all()  # gradients flowed: each map min-max scaled
    assert torch.equal(logits.argmax(1), cam.predictions(trained, x))
    assert torch.allclose(maps, cam.gradcam(trained, fvdata.to_float(x), "small_cnn"))  # float input


def test_frozen_model_state_restored_and_hooks_released(trained, batch):
    x, _ = batch
    model = copy.deepcopy(trained).train()
    model.features[0].eval()  # a mixed state must come back exactly
    model.requires_grad_(False)
    before = _state(model)
    maps = cam.gradcam(model, x, "small_cnn")
    assert _state(model) == before and (maps.amax(dim=(1, 2)) > 0).all()
    assert _no_hooks(model)


def test_trainable_model_keeps_flags_and_grads(trained, batch):
    x, _ = batch
    model = copy.deepcopy(trained)
    sentinel = torch.full_like(model.fc.weight, 7.0)
    model.fc.weight.grad = sentinel
    with torch.no_grad():  # callers are often under no_grad
        cam.gradcam(model, x, "small_cnn")
    assert model.fc.weight.grad is sentinel and model.features[0].weight.grad is None
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_bad_target_raises_and_still_releases(trained, batch):
    x, _ = batch
    before = _state(trained)
    with pytest.raises(RuntimeError, match="out of range"):  # GradCAM swallows the IndexError
        cam.gradcam(trained, x, "small_cnn", targets=99)
    assert _no_hooks(trained) and _state(trained) == before
    with pytest.raises(ValueError):
        cam.gradcam(trained, x, "small_cnn", targets=[0, 1])
    with pytest.raises(ValueError):
        cam.gradcam(trained, x, "small_cnn", targets=-1)


def test_delta_and_targets(trained, batch):
    x, _ = batch
    base = cam.gradcam(trained, x, "small_cnn")
    zero = torch.zeros(3, 32, 32)
    assert torch.equal(cam.gradcam(trained, x, "small_cnn", delta=zero), base)
    g = torch.Generator().manual_seed(0)
    delta = 0.5 * torch.randn(3, 32, 32, generator=g)
    assert cam.saliency_shift(cam.gradcam(trained, x, "small_cnn", delta=delta), base).mean() > 1e-3
    other = (cam.predictions(trained, x) + 5) % 10
    assert cam.saliency_shift(cam.gradcam(trained, x, "small_cnn", targets=other), base).mean() > 1e-3
    # batching does not change the maps
    assert torch.allclose(cam.gradcam(trained, x, "small_cnn", batch_size=4), base, atol=1e-5)


def test_saliency_shift_and_summary():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 8, 8, generator=g), torch.rand(4, 8, 8, generator=g)
    assert torch.allclose(cam.saliency_shift(a, a), torch.zeros(4), atol=1e-6)
    s = cam.saliency_shift(a, b)
    assert s.shape == (4,) and (s > 0).all()
    assert cam.saliency_shift(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 0.0
    assert cam.saliency_shift(torch.zeros(1, 4, 4), torch.ones(1, 4, 4)).item() == 1.0
    summary = cam.shift_summary({"Original": a, "Other": b})
    assert summary["Original"] == pytest.approx(0, abs=1e-6) and summary["Other"] > 0


def test_overlay_upsamples_to_rgb_float(batch):
    x, _ = batch
    out = cam.overlay(x[0], torch.rand(32, 32), size=96)
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1


def test_panel_figure_and_numbers(trained, batch, digits):
    x, y = batch
    x, y = x[:3], y[:3]
    delta = 0.5 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    methods = {"Original": (trained, None), "FV": (trained, delta)}
    fig, numbers = cam.panel(x, methods, "small_cnn", y, digits.classes, display_size=64)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 2
    assert fig.axes[0].get_title().startswith("Original")
    json.dumps(numbers)  # sidecar-ready
    orig, fv = numbers["methods"]["Original"], numbers["methods"]["FV"]
    assert orig["predictions"] == cam.predictions(trained, x).tolist()
    assert fv["predictions"] == cam.predictions(trained, x, delta).tolist()
    assert orig["correct"] == [p == t for p, t in zip(orig["predictions"], y.tolist())]
    assert orig["mean_saliency_shift"] == pytest.approx(0, abs=1e-6)
    assert len(fv["saliency_shift"]) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing ✓/✗ glyph would warn
        fig.savefig(io.BytesIO(), format="png")
