"""Grad-CAM on systems (fvlib.cam): shapes, state hygiene, forget vectors, panel, saliency-change table."""
from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from fvlib import cam, metrics, models, splits
from fvlib.data import to_float
from fvlib.forget_vector import ForgetVector, perturb, shown

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")



def predict(system, x):
    """Predicted classes (N,) on the CPU (what a panel's ✓/✗ compares with the labels); modes kept."""
    with models.frozen(system):
        return metrics.logits(system, x).argmax(1).cpu()

@pytest.fixture(scope="module")
def batch(digits):
    return digits.test_x[:6], digits.test_y[:6]


@pytest.fixture(scope="module")
def vector(digits):
    """A random forget vector strong enough to move predictions and maps."""
    g = torch.Generator().manual_seed(0)
    return ForgetVector(0.5 * torch.randn(digits.image_shape, generator=g))


def _untrained(arch: str, digits) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build(arch, 10, digits.spec.mean, digits.spec.std).eval()


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not getattr(m, d) for m in model.modules() for d in HOOK_DICTS)


@pytest.mark.parametrize("arch,size,n", [("small_cnn", 32, 6), ("resnet18", 32, 2), ("vgg16_bn", 112, 1)])
def test_maps_shape_and_range(arch, size, n, original, digits):
    model = original if arch == "small_cnn" else _untrained(arch, digits)
    x = digits.test_x[:n]
    if size != 32:  # upsample the digits so VGG's four pools leave a 7x7 map
        x = torch.nn.functional.interpolate(to_float(x), size=(size, size), mode="bilinear")
    maps = cam.gradcam(model, x, arch)
    assert maps.shape == (n, size, size) and maps.dtype == torch.float32
    # grad-cam min-max scales each map (the clamp after it must change nothing): min 0, max ≈ 1 or 0
    low, high = maps.amin(dim=(1, 2)), maps.amax(dim=(1, 2))
    assert torch.isfinite(maps).all() and (low == 0).all()
    assert ((high - 1).abs() < 1e-4).logical_or(high == 0).all(), high
    assert _no_hooks(model)


def test_trained_maps_are_informative_and_match_predictions(original, batch):
    x, _ = batch
    maps, logits = cam.cam_and_logits(original, x, "small_cnn")
    assert (maps.amax(dim=(1, 2)) > 0.99).all()  # gradients flowed: each map min-max scaled
    assert torch.equal(logits.argmax(1), predict(original, x))
    assert torch.allclose(maps, cam.gradcam(original, to_float(x), "small_cnn"))  # float input


@pytest.mark.parametrize("wrapped", [False, True], ids=["theta_o", "forget_vector"])
def test_train_mode_flags_and_grads_restored(original, batch, vector, wrapped):
    """A model in train mode with trainable parameters and gradients comes back exactly as it was."""
    x, _ = batch
    model = copy.deepcopy(original).train().requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    for p, gr in zip(model.parameters(), grads):
        p.grad = gr
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    system = vector.wrap(model) if wrapped else model
    with torch.no_grad():  # callers are often under no_grad: the CAM must still get gradients
        maps = cam.gradcam(system, x, "small_cnn")
    assert (maps.amax(dim=(1, 2)) > 0.99).all()
    assert all(m.training for m in system.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is gr and torch.equal(p.grad, gr.clone()) for p, gr in zip(model.parameters(), grads))
    # eval mode inside: BN running statistics untouched, weights untouched
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())
    assert _no_hooks(system)


def test_mixed_modes_restored(original, batch):
    x, _ = batch
    model = copy.deepcopy(original).train()
    model.features[0].eval()
    model.fc.requires_grad_(False)
    before = ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])
    cam.gradcam(model, x, "small_cnn")
    predict(model, x)
    assert ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]) == before


def test_bad_target_raises_and_still_releases(original, batch):
    x, _ = batch
    before = [p.requires_grad for p in original.parameters()]
    with pytest.raises(RuntimeError, match="out of range"):  # GradCAM swallows the IndexError
        cam.gradcam(original, x, "small_cnn", targets=99)
    assert _no_hooks(original) and [p.requires_grad for p in original.parameters()] == before
    with pytest.raises(ValueError):
        cam.gradcam(original, x, "small_cnn", targets=[0, 1])
    with pytest.raises(ValueError):
        cam.gradcam(original, x, "small_cnn", targets=-1)


def test_maps_are_the_grad_cam_librarys_own(original, digits):
    """The range check above runs after fvlib's clamp, so it cannot see a map scaled or shifted
    inside fvlib: compare with pytorch-grad-cam itself, called directly on the same batch (same
    kernels), on a copy of θ_o (the library leaves gradients behind)."""
    from pytorch_grad_cam import GradCAM

    x = digits.test_x[:6]
    ours = cam.gradcam(original, x, "small_cnn")
    model = copy.deepcopy(original).eval()
    with GradCAM(model=model, target_layers=[cam.target_layer("small_cnn", model)]) as ref:
        raw = torch.from_numpy(ref(to_float(x).requires_grad_(True), None))
    assert raw.shape == ours.shape and float(raw.amax()) > 0.5  # maps with content, not all zero
    assert torch.allclose(ours, raw, atol=1e-4)


@pytest.mark.parametrize("clamp", [False, True])
def test_forget_vector_cam_is_cam_of_perturbed_input(original, batch, vector, clamp):
    """Grad-CAM of fv.wrap(θ_o) on x = Grad-CAM of θ_o on the explicit x + δ; not θ_o's on x."""
    x, _ = batch
    fv = ForgetVector(vector.delta, {"config": {"clamp": clamp}})
    system = fv.wrap(original)
    explicit = perturb(to_float(x), fv.delta, clamp)
    maps, logits = cam.cam_and_logits(system, x, "small_cnn")
    ref_maps, ref_logits = cam.cam_and_logits(original, explicit, "small_cnn")
    assert torch.allclose(maps, ref_maps, atol=1e-5) and torch.allclose(logits, ref_logits, atol=1e-5)
    assert torch.equal(shown(system, to_float(x)), explicit)
    plain = cam.gradcam(original, x, "small_cnn")
    assert cam.saliency_change(maps, plain).mean() > 1e-3
    assert torch.equal(predict(system, x), ref_logits.argmax(1))
    # a zero vector is θ_o itself
    zero = ForgetVector(torch.zeros_like(fv.delta)).wrap(original)
    assert torch.allclose(cam.gradcam(zero, x, "small_cnn"), plain, atol=1e-6)


def test_targets_and_batching(original, batch):
    x, _ = batch
    base = cam.gradcam(original, x, "small_cnn")
    other = (predict(original, x) + 5) % 10
    assert cam.saliency_change(cam.gradcam(original, x, "small_cnn", targets=other), base).mean() > 1e-3
    # batches of 4 + 2 vs one of 6: CPU kernels may differ in the last bits by batch size, and the
    # min-max scaling can enlarge that; a batching bug (maps of other images) would be O(1)
    assert torch.allclose(cam.gradcam(original, x, "small_cnn", batch_size=4), base, atol=1e-3)


def test_saliency_change():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 8, 8, generator=g), torch.rand(4, 8, 8, generator=g)
    assert torch.allclose(cam.saliency_change(a, a), torch.zeros(4), atol=1e-6)
    s = cam.saliency_change(a, b)
    assert s.shape == (4,) and (s > 0).all()
    assert cam.saliency_change(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 0.0
    assert cam.saliency_change(torch.zeros(1, 4, 4), torch.ones(1, 4, 4)).item() == 1.0


def test_overlay_upsamples_to_rgb_float(batch):
    x, _ = batch
    out = cam.overlay(x[0], torch.rand(32, 32), size=96)
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    image = np.kron(x[0].numpy() / 255.0, np.ones((3, 3, 1)))        # nearest upsampling, 32 -> 96
    only_image = cam.overlay(x[0], torch.rand(32, 32), size=96, image_weight=1.0)
    assert np.abs(only_image - image).max() <= 1 / 255 + 1e-6       # weight 1: the image itself
    hot, cold = (cam.overlay(x[0], torch.full((32, 32), v), size=96, image_weight=0.0) for v in (1.0, 0.0))
    assert hot[..., 0].mean() > hot[..., 2].mean() and cold[..., 2].mean() > cold[..., 0].mean()  # jet


def test_panel_figure_and_numbers(original, batch, digits, vector):
    x, y = batch[0][:3], batch[1][:3]
    fv_system = vector.wrap(original)
    methods = {"Original": original, "FV": fv_system}
    fig, numbers = cam.panel(x, methods, "small_cnn", y, digits.classes, display_size=64)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 2
    assert fig.axes[0].get_title().startswith("Original")
    json.dumps(numbers)  # sidecar-ready
    orig, fv = numbers["methods"]["Original"], numbers["methods"]["FV"]
    assert orig["predictions"] == predict(original, x).tolist()
    assert fv["predictions"] == predict(fv_system, x).tolist()
    assert orig["correct"] == [p == t for p, t in zip(orig["predictions"], y.tolist())]
    assert orig["mean_saliency_change"] == pytest.approx(0, abs=1e-6)
    assert fv["mean_saliency_change"] > 1e-3 and len(fv["saliency_change"]) == 3
    # the FV cell shows the map over x + δ (what θ_o sees), the Original cell over x. Maps are
    # recomputed for the same batch of 3 as the panel's (like with like: kernels differ by batch
    # size); the overlay is uint8 / 255, and one rounding step of the CAM's colour index moves a
    # blended jet colour by up to 2/255, so that is the tolerance. θ_o's own map must not pass.
    seen = shown(fv_system, to_float(x)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    shown_cell = np.asarray(fig.axes[1].images[0].get_array())
    fv_map, orig_map = cam.gradcam(fv_system, x, "small_cnn")[0], cam.gradcam(original, x, "small_cnn")[0]
    assert np.allclose(shown_cell, cam.overlay(seen[0], fv_map, 64), atol=2 / 255 + 1e-6)
    assert not np.allclose(shown_cell, cam.overlay(seen[0], orig_map, 64), atol=2 / 255 + 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing ✓/✗ glyph would warn
        fig.savefig(io.BytesIO(), format="png")


def test_pick_images(digits, original):
    split = splits.classwise(digits, 3)
    forget = cam.pick_images(digits, split.forget, 4, seed=0, system=original)
    assert len(forget) == 4 and (digits.train_y[forget] == 3).all()
    assert (predict(original, digits.train_x[forget]) == 3).all()  # θ_o's ✓ first
    assert torch.equal(forget, cam.pick_images(digits, split.forget, 4, seed=0, system=original))
    retain = cam.pick_images(digits, split.retain, 5, seed=0, spread_classes=True)
    assert len(retain) == 5 and len(set(digits.train_y[retain].tolist())) == 5
    assert not split.forget[retain].any()


def test_saliency_change_table(digits, original, vector):
    split = splits.classwise(digits, 0)
    methods = {"Original": original, "Noise": vector.wrap(original)}
    sets = {"forget": (digits.train_x[split.forget][:8], digits.train_y[split.forget][:8]),
            "retain": (digits.train_x[split.retain][:8], digits.train_y[split.retain][:8])}
    table = cam.saliency_change_table(methods, sets, "small_cnn")
    assert list(table.index) == ["Original", "Noise"]
    for s, (images, labels) in sets.items():
        assert table.loc["Original", f"change_{s}"] == pytest.approx(0.0, abs=1e-6)
        assert 1e-3 < table.loc["Noise", f"change_{s}"] <= 2.0
        acc = (predict(methods["Noise"], images) == labels).float().mean().item()
        assert table.loc["Noise", f"acc_{s}"] == pytest.approx(acc) and table[f"n_{s}"].eq(8).all()
    with pytest.raises(ValueError, match="reference"):
        cam.saliency_change_table(methods, sets, "small_cnn", reference="Retrain")
