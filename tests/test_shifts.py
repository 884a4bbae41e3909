"""Data shifts (docs/protocol.md P8): corruptions, the elastic reference, PGD, registry and cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fvlib import shifts
from fvlib.data import to_float
from fvlib.forget_vector import ForgetVector

SIZES = [(32, 4), (112, 2), (224, 1)]  # (side, batch): keep the 224 case tiny


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, size, size, 3) uint8 natural-ish images: upsampled random colour blocks."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g)
    up = nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return (up * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FVLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- corruptions

@pytest.mark.parametrize("size,n", SIZES)
@pytest.mark.parametrize("name", shifts.CORRUPTIONS)
def test_corruption_shape_dtype_determinism(name, size, n):
    x = smooth_images(n, size)
    a = shifts.render(name, x, seed=1)
    assert a.shape == x.shape and a.dtype == torch.uint8 and a.device == x.device
    assert torch.equal(a, shifts.render(name, x, seed=1))          # same seed -> identical
    assert not torch.equal(a, shifts.render(name, x, seed=2))      # different seed -> different
    assert not torch.equal(a, x)                                    # it does change the images


@pytest.mark.parametrize("name,sigma", [("gn1", 0.08), ("gn2", 0.2)])
def test_gaussian_noise_statistics(name, sigma):
    x = torch.full((8, 32, 32, 3), 128, dtype=torch.uint8)         # mid-gray: little clipping
    d = (shifts.render(name, x, seed=0).float() - x.float()) / 255
    assert abs(d.mean().item()) < 0.005
    # σ=0.2 clips at ±2.5σ, which shrinks the std by ~3 %; 24k samples give ~0.5 % sampling error
    assert d.std().item() == pytest.approx(sigma, rel=0.05)


def test_gaussian_noise_range_clips():
    x = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    x[:, 8:] = 255                                                  # half black, half white
    raw = shifts.gaussian_noise(x, 0.2, torch.Generator().manual_seed(0))
    assert raw.dtype == torch.uint8 and raw.shape == x.shape                # 8-bit, like saved images
    out = raw.int()
    black, white = out[:, :8], out[:, 8:]
    # clipping: a black pixel can only get brighter, a white one darker; about half stay put
    assert 0.4 < (black == 0).float().mean() < 0.6 and 0.4 < (white == 255).float().mean() < 0.6


@pytest.mark.parametrize("size", [32, 112])
def test_elastic_identity_when_no_displacement_or_jitter(size):
    x = smooth_images(3, size)
    out = shifts.elastic(x, (0.0, 5.0, 0.0), torch.Generator().manual_seed(0))
    assert (out.int() - x.int()).abs().max() <= 1                   # interpolation at pixel centres


def test_gaussian_matrix_matches_scipy_for_huge_kernels():
    from scipy.ndimage import gaussian_filter1d
    v = np.random.default_rng(0).uniform(-1, 1, 32)
    for sigma in (170.8, 19.52, 1.5):                               # radius 512, 59, 5 on 32 px
        a = shifts.gaussian_matrix(32, sigma).numpy()
        np.testing.assert_allclose(a @ v, gaussian_filter1d(v, sigma, mode="reflect", truncate=3),
                                   atol=1e-12)


@pytest.mark.parametrize("size,n", [(32, 4), (112, 2)])
@pytest.mark.parametrize("c", [(488.0, 170.8, 24.4), (488.0, 19.52, 48.8), (20.0, 4.0, 6.0)],
                         ids=["et1", "et2", "mild"])
def test_elastic_device_path_matches_scipy_reference(c, size, n):
    # Both paths get the same draws. Float32 vs float64 arithmetic only moves a value across a
    # rounding boundary now and then, so we require max |diff| <= 1 gray level and mean < 0.01.
    x = smooth_images(n, size, seed=3)
    draws = shifts.elastic_draws(n, size, size, c, torch.Generator().manual_seed(7))
    fast = shifts.elastic_apply(x, c, draws).numpy().astype(int)
    ref = np.stack([shifts.elastic_reference(x[i].numpy(), c, draws=[d[i].numpy() for d in draws])
                    for i in range(n)]).astype(int)
    diff = np.abs(fast - ref)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_elastic_reference_with_rng_is_seeded():
    img = smooth_images(1, 32)[0].numpy()
    c = (488.0, 19.52, 48.8)
    a = shifts.elastic_reference(img, c, np.random.default_rng(0))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, shifts.elastic_reference(img, c, np.random.default_rng(0)))


# ----------------------------------------------------------------------------- registry / cache

def test_unknown_shift_lists_valid_names():
    with pytest.raises(ValueError, match="gn1.*et2.*pgd"):
        shifts.render("fog", smooth_images(1, 32), seed=0)


def test_pgd_needs_model_and_labels():
    with pytest.raises(ValueError, match="needs y and a model"):
        shifts.render("pgd", smooth_images(1, 32), seed=0)


def test_render_cached_hits_and_matches(tmp_cache):
    x = smooth_images(4, 32)
    a = shifts.render_cached("et2", "fp", "test", x, seed=5)
    assert torch.equal(a, shifts.render("et2", x, seed=5))
    assert len(list(tmp_cache.glob("shift-et2-*.safetensors"))) == 1
    assert torch.equal(a, shifts.render_cached("et2", "fp", "test", x, seed=5))
    shifts.render_cached("et2", "fp", "test", x, seed=6)            # new seed -> new entry
    assert len(list(tmp_cache.glob("shift-et2-*.safetensors"))) == 2
    with pytest.raises(ValueError, match="valid names"):
        shifts.render_cached("pgd", "fp", "test", x, seed=5)


# ----------------------------------------------------------------------------- PGD

@pytest.fixture(scope="module")
def victim(digits, original):
    """θ_o (smoke recipe, conftest) and 64 digits test images it mostly classifies correctly."""
    return original.eval(), digits.test_x[:64], digits.test_y[:64]


def probs(system, xf, y):
    """True-label probability (N,) of float images xf (N, 3, H, W) under a system."""
    with torch.no_grad():
        return system(xf).softmax(1).gather(1, y[:, None]).squeeze(1)


def acc(system, xf, y) -> float:
    with torch.no_grad():
        return (system(xf).argmax(1) == y).float().mean().item()


def harmful_vector(shape=(3, 32, 32)) -> ForgetVector:
    """A forget vector that wrecks θ_o's predictions (a stand-in for one that forgets everything)."""
    return ForgetVector(0.3 * torch.sign(torch.randn(shape, generator=torch.Generator().manual_seed(0))))


def test_pgd_attack_lowers_accuracy_within_eps_ball(victim):
    model, x, y = victim
    x0, eps = to_float(x), 8 / 255
    adv = shifts.pgd(model, x, y, eps=eps, g=torch.Generator().manual_seed(0))
    assert adv.shape == x0.shape and adv.dtype == torch.float32
    assert (adv - x0).abs().max().item() <= eps + 1e-6                # inside the ℓ∞ ball
    assert adv.min().item() >= 0 and adv.max().item() <= 1            # valid pixels
    # black and white pixels: a step off [0, 1] must be clipped back, not merely avoided
    edge = x.clone()
    edge[:, :, :16], edge[:, :, 16:] = 0, 255
    adv_edge = shifts.pgd(model, edge, y, eps=eps, g=torch.Generator().manual_seed(0))
    assert adv_edge[..., :16].min().item() == 0.0 and adv_edge[..., 16:].max().item() == 1.0
    assert adv_edge[..., :16].max().item() > 0 and adv_edge[..., 16:].min().item() < 1  # it did move
    assert adv_edge.min().item() >= 0 and adv_edge.max().item() <= 1
    clean, attacked = acc(model, x0, y), acc(model, adv, y)
    assert clean > 0.9 and attacked < clean - 0.3, (clean, attacked)  # the attack really bites
    assert probs(model, adv, y).mean() < probs(model, x0, y).mean() - 0.2
    # a random perturbation of the same size is far weaker: the gradient matters
    sign = torch.sign(torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)))
    noise = (x0 + eps * sign).clamp(0, 1)
    assert acc(model, noise, y) > attacked + 0.2


def test_pgd_restore_raises_true_label_probability(victim):
    model, x, y = victim
    system = harmful_vector().wrap(model)                               # sees x + δ: mostly wrong
    x0 = to_float(x)
    before = probs(system, x0, y)
    restored = shifts.pgd(system, x, y, restore=True, g=torch.Generator().manual_seed(0))
    after = probs(system, restored, y)
    assert (restored - x0).abs().max().item() <= 8 / 255 + 1e-6
    assert restored.min().item() >= 0 and restored.max().item() <= 1
    assert after.mean() > before.mean() + 0.1, (before.mean(), after.mean())
    assert acc(system, restored, y) > acc(system, x0, y) + 0.1


def test_pgd_on_a_wrapped_vector_sees_delta(victim):
    model, x, y = victim
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    fv = harmful_vector()
    plain = shifts.pgd(model, x, y, g=g())
    wrapped = shifts.pgd(fv.wrap(model), x, y, g=g())
    assert not torch.equal(plain, wrapped)                             # the gradient went through δ
    # ... and only because of δ: a zero vector gives θ_o's attack bit for bit
    assert torch.equal(plain, shifts.pgd(ForgetVector(torch.zeros(3, 32, 32)).wrap(model), x, y, g=g()))
    # restoring against the deployed system (δ known) beats restoring against θ_o alone
    system = fv.wrap(model)
    known = shifts.pgd(system, x, y, restore=True, g=g())
    blind = shifts.pgd(model, x, y, restore=True, g=g())
    assert probs(system, known, y).mean() > probs(system, blind, y).mean() + 0.05


def test_pgd_render_is_seeded_and_quantized_slots_in_as_data(victim):
    model, x, y = victim
    adv = shifts.render("pgd", x, seed=0, model=model, y=y)           # default: 8-bit as saved sets
    assert adv.shape == x.shape and adv.dtype == torch.uint8
    assert (adv.int() - x.int()).abs().max().item() <= 8              # ε = 8/255 = 8 grey levels
    assert acc(model, to_float(adv), y) < acc(model, to_float(x), y) - 0.3
    assert torch.equal(adv, shifts.render("pgd", x, seed=0, model=model, y=y))
    assert not torch.equal(adv, shifts.render("pgd", x, seed=1, model=model, y=y))


def test_pgd_attack_original_ignores_the_system(victim):
    model, x, y = victim
    cfg = shifts.ShiftConfig(attack_original=True, pgd_quantize=False)
    decoy = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    a = shifts.render("pgd", x, seed=0, model=harmful_vector().wrap(decoy), y=y, cfg=cfg, original=model)
    b = shifts.render("pgd", x, seed=0, model=model, y=y, cfg=shifts.ShiftConfig(pgd_quantize=False))
    assert torch.equal(a, b)


def test_pgd_restores_modes_flags_and_grads(victim):
    model, x, y = victim
    system = harmful_vector().wrap(model)
    first = next(model.parameters())
    try:
        model.train()                                                   # a caller's own choices
        first.requires_grad_(False)
        grads = [p.grad for p in model.parameters()]
        stats = {k: v.clone() for k, v in model.state_dict().items()}
        shifts.pgd(system, x[:8], y[:8], g=torch.Generator().manual_seed(0))
        assert all(m.training for m in model.modules())                 # θ_o's modes are back ...
        assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())  # ... BN untouched
        assert not first.requires_grad and all(p.requires_grad for p in list(model.parameters())[1:])
        assert all(p.grad is g for p, g in zip(model.parameters(), grads))  # no parameter gradient
    finally:
        first.requires_grad_(True)
        model.eval()


def test_pgd_zero_steps_without_start_is_the_clean_image(victim):
    model, x, y = victim
    assert torch.equal(shifts.pgd(model, x, y, steps=0, random_start=False), to_float(x))


@pytest.mark.parametrize("size", [112, 224])
def test_pgd_other_sizes(size):
    from fvlib.models import build
    model = build("small_cnn", 10, (0.5,) * 3, (0.25,) * 3).eval()
    x, y = smooth_images(2, size), torch.tensor([0, 1])
    adv = shifts.pgd(model, x, y, steps=2, g=torch.Generator().manual_seed(0))
    assert adv.shape == (2, 3, size, size)
    assert (adv - to_float(x)).abs().max().item() <= 8 / 255 + 1e-6
