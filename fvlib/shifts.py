"""Data shifts of the shift study (docs/protocol.md P8): Gaussian noise, elastic transform, PGD.

Corruptions map uint8 images (N, H, W, 3) to uint8 images of the same shape (clip + round, as the
paper's pre-generated image folders are 8-bit, P8), so a shifted set slots in wherever data does.
PGD is white-box against a system (an nn.Module; for a forget vector δ is inside it) and returns
float (N, 3, H, W) in [0, 1] (or uint8 on request).
Randomness: one torch.Generator per (seed, shift) on the images' device, consumed in fixed chunks
of CHUNK images, so a render is a pure function of (images, seed, device type, params).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fvlib import models, runtime
from fvlib.cache import cached_tensors, config_hash
from fvlib.data import to_float

CHUNK = 256  # images per random draw / batch; part of the render's identity (see module docstring)
ETParams = tuple[float, float, float]  # (c0 = α displacement scale, c1 = σ smoothing, c2 = affine jitter)


@dataclasses.dataclass(frozen=True)
class ShiftConfig:
    """Parameters of every shift; defaults are the paper's (docs/protocol.md P8)."""
    gn1_sigma: float = 0.08                      # P8.1 GN1: σ in [0,1] pixel space (ImageNet-C sev. 1)
    gn2_sigma: float = 0.2                       # P8.1 GN2: σ = 0.2 (custom, not a standard severity)
    et1: ETParams = (488.0, 170.8, 24.4)         # P8.2 ET1 = ImageNet-C elastic severity 1 (244·(2, .7, .1))
    et2: ETParams = (488.0, 19.52, 48.8)         # P8.2 ET2 = ImageNet-C elastic severity 2 (244·(2, .08, .2))
    pgd_eps: float = 8 / 255                     # P8.3 ℓ∞ budget ε = 8/255
    pgd_steps: int = 7                           # P8.3 K = 7 steps
    pgd_step_size: float = 2 / 255               # P8.3 not stated; recommended 2/255
    pgd_random_start: bool = True                # P8.3 not stated; recommended uniform start in the ε-ball
    pgd_quantize: bool = True                    # P8 the paper's --adv sets were saved image folders (8-bit)
    attack_original: bool = False                # P8.3 option: transfer set from θ_o instead of white-box


# ----------------------------------------------------------------------------- helpers

def _to_uint8(xf: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0,1]-ish -> (B, H, W, 3) uint8: clip, ×255, round (P8: saved images)."""
    return xf.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _chunked(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply fn to CHUNK-sized slices of x along dim 0 and concatenate (bounded memory)."""
    return torch.cat([fn(c) for c in x.split(CHUNK)]) if len(x) else x.clone()


# ----------------------------------------------------------------------------- P8.1 Gaussian noise

def gaussian_noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8: x/255 + N(0, σ²) per pixel and channel, clip, ×255, round (P8.1)."""
    def one(c: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(c.shape, generator=g, device=c.device, dtype=torch.float32)
        return (c.float() / 255 + sigma * noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    return _chunked(x, one)


# ----------------------------------------------------------------------------- P8.2 elastic

def gaussian_matrix(n: int, sigma: float, truncate: float = 3.0, device="cpu",
                    dtype=torch.float64) -> torch.Tensor:
    """(n, n) matrix A with A @ v = scipy gaussian_filter1d(v, σ, mode='reflect', truncate).

    Exact for kernels wider than the line: the half-sample reflection is applied as an index map
    with period 2n (…dcba|abcd|dcba|abcd…), which is what scipy does for any radius (P8.2 step 2).
    """
    r = int(truncate * sigma + 0.5)  # scipy's kernel radius
    taps = torch.arange(-r, r + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (taps / sigma) ** 2) if sigma > 0 else (taps == 0).to(dtype)
    w = w / w.sum()
    src = torch.arange(n, device=device)[:, None] + torch.arange(-r, r + 1, device=device)[None]
    m = src.remainder(2 * n)
    src = torch.where(m >= n, 2 * n - 1 - m, m)  # reflect (half-sample symmetric), periodic
    a = torch.zeros(n, n, device=device, dtype=dtype)
    rows = torch.arange(n, device=device)[:, None].expand_as(src)
    a.index_put_((rows.reshape(-1), src.reshape(-1)), w.expand_as(src).reshape(-1), accumulate=True)
    return a


def _source_points(h: int, w: int) -> torch.Tensor:
    """(3, 2) affine source points as (x, y) pairs, literally as ImageNet-C builds them (P8.2 step 1)."""
    c0, c1, s = float(h // 2), float(w // 2), float(min(h, w) // 3)
    return torch.tensor([[c0 + s, c1 + s], [c0 + s, c1 - s], [c0 - s, c1 - s]], dtype=torch.float64)


def elastic_draws(n: int, h: int, w: int, c: ETParams, g: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random inputs of n elastic transforms: jitter (n, 3, 2) ~ U(−c2, c2), ux, uy (n, h, w) ~ U(−1, 1)."""
    dev = g.device
    jitter = (torch.rand(n, 3, 2, generator=g, device=dev) * 2 - 1) * c[2]
    ux = torch.rand(n, h, w, generator=g, device=dev) * 2 - 1
    uy = torch.rand(n, h, w, generator=g, device=dev) * 2 - 1
    return jitter, ux, uy


def _inverse_affine(jitter: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 2, 3) map output (x, y, 1) -> source (x, y): the inverse of getAffineTransform(p1, p1+jitter)."""
    p1 = _source_points(h, w).to(jitter.device)
    p2 = p1 + jitter.double()                                   # destination points (P8.2 step 1)
    ones = torch.ones(*p2.shape[:2], 1, dtype=p2.dtype, device=p2.device)
    # solve [p2 1] @ Aᵀ = p1 for each image: A maps destination -> source (warpAffine samples src at A·dst)
    return torch.linalg.solve(torch.cat([p2, ones], -1), p1.expand_as(p2)).transpose(1, 2)


def _pixel_grid(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) float64 column (x) and row (y) index grids."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float64),
                            torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    return xs, ys


def _sample(img: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, centres: bool) -> torch.Tensor:
    """Bilinear sample (B, C, H, W) at pixel coords (B, H, W) with reflection about pixel centres
    (centres=True, reflect-101 / scipy 'mirror') or pixel edges (False, scipy 'reflect')."""
    h, w = img.shape[-2:]
    if centres:
        gx, gy = 2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1
    else:
        gx, gy = (2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1
    grid = torch.stack([gx, gy], -1).to(img.dtype)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=centres)


def elastic_apply(x: torch.Tensor, c: ETParams, draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8: ImageNet-C elastic transform with given draws, batched (P8.2)."""
    jitter, ux, uy = (d.to(x.device) for d in draws)
    n, h, w = x.shape[:3]
    img = to_float(x)
    xs, ys = _pixel_grid(h, w, x.device)
    a = _inverse_affine(jitter, h, w)                            # step 1: random affine, reflect-101
    sx = a[:, 0, 0, None, None] * xs + a[:, 0, 1, None, None] * ys + a[:, 0, 2, None, None]
    sy = a[:, 1, 0, None, None] * xs + a[:, 1, 1, None, None] * ys + a[:, 1, 2, None, None]
    img = _sample(img, sx, sy, centres=True)
    gh = gaussian_matrix(h, c[1], device=x.device, dtype=torch.float32)
    gw = gh if w == h else gaussian_matrix(w, c[1], device=x.device, dtype=torch.float32)
    dx = gh @ ux.float() @ gw.T * c[0]                           # step 2: smoothed fields, × c0
    dy = gh @ uy.float() @ gw.T * c[0]
    out = _sample(img, xs + dx.double(), ys + dy.double(), centres=False)  # step 3: reflect
    return _to_uint8(out)                                        # clip, ×255, round


def elastic(x: torch.Tensor, c: ETParams, g: torch.Generator) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8: elastic transform with draws from g, CHUNK images at a time (P8.2)."""
    h, w = x.shape[1:3]
    return _chunked(x, lambda b: elastic_apply(b, c, elastic_draws(len(b), h, w, c, g)))


def elastic_reference(img: np.ndarray, c: ETParams, rng: np.random.Generator | None = None,
                      draws: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8: per-image scipy/NumPy ImageNet-C elastic transform (P8.2).

    draws = (jitter (3, 2), ux (H, W), uy (H, W)) overrides rng (for comparing with elastic_apply).
    """
    from scipy.ndimage import affine_transform, gaussian_filter, map_coordinates
    h, w = img.shape[:2]
    if draws is None:
        draws = (rng.uniform(-c[2], c[2], (3, 2)), rng.uniform(-1, 1, (h, w)), rng.uniform(-1, 1, (h, w)))
    jitter, ux, uy = (np.asarray(d, dtype=np.float64) for d in draws)
    im = img.astype(np.float32) / 255.0
    p1 = _source_points(h, w).numpy()
    p2 = p1 + jitter                                                      # (x, y) convention
    a = np.linalg.solve(np.hstack([p2, np.ones((3, 1))]), p1).T          # dst -> src, (2, 3)
    mat = np.array([[a[1, 1], a[1, 0]], [a[0, 1], a[0, 0]]])              # (row, col) convention
    off = np.array([a[1, 2], a[0, 2]])
    warped = np.stack([affine_transform(im[..., k], mat, off, order=1, mode="mirror")
                       for k in range(3)], -1)                            # reflect-101 border
    dx = gaussian_filter(ux, c[1], mode="reflect", truncate=3) * c[0]
    dy = gaussian_filter(uy, c[1], mode="reflect", truncate=3) * c[0]
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.stack([map_coordinates(warped[..., k], [ys + dy, xs + dx], order=1, mode="reflect")
                    for k in range(3)], -1)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- P8.3 PGD

def pgd(system: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, steps: int = 7,
        step_size: float = 2 / 255, restore: bool = False, g: torch.Generator | None = None,
        random_start: bool = True, quantize: bool = False, batch_size: int = CHUNK) -> torch.Tensor:
    """ℓ∞ PGD on uint8 x (N, H, W, 3), labels y (N,) -> float x_adv (N, 3, H, W) in [0, 1] (P8.3).

    White-box against `system` as deployed: for a forget vector (`fv.wrap(θ_o)`) the gradient
    flows through x_adv + δ, so the adversary sees δ. Default maximises the true-label CE;
    restore=True minimises it (an adversary trying to undo unlearning). quantize=True returns uint8
    (N, H, W, 3) (still within ε when 255·ε is an integer). The system runs under models.frozen:
    eval mode, no parameter gradients, every module's mode and parameter flag restored afterwards.
    """
    sign = -1.0 if restore else 1.0
    out = []
    with models.frozen(system):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            x0 = to_float(xb)
            xa = x0.clone()
            if random_start:
                u = (torch.rand(x0.shape, generator=g, device=x0.device) if g is not None
                     else torch.rand_like(x0))
                xa = (x0 + (2 * u - 1) * eps).clamp(0, 1)
            for _ in range(steps):
                xa.requires_grad_(True)
                with runtime.autocast(xa.device):
                    loss = F.cross_entropy(system(xa).float(), yb.to(xa.device), reduction="sum")
                (grad,) = torch.autograd.grad(loss, xa)
                with torch.no_grad():
                    xa = xa + sign * step_size * grad.sign()
                    xa = torch.min(torch.max(xa, x0 - eps), x0 + eps).clamp(0, 1)  # project, clamp
            out.append(xa.detach())
    xf = torch.cat(out) if out else to_float(x)
    return _to_uint8(xf) if quantize else xf


# ----------------------------------------------------------------------------- registry

def _gn(key: str):
    return lambda x, g, cfg, **_: gaussian_noise(x, getattr(cfg, key), g)


def _et(key: str):
    return lambda x, g, cfg, **_: elastic(x, getattr(cfg, key), g)


def _pgd_shift(x, g, cfg: ShiftConfig, model=None, y=None, original=None, **_):
    """PGD as a registry entry: white-box on the system `model` (δ inside it for a forget vector),
    or on θ_o (`original`) if cfg.attack_original (one transferred set for every system)."""
    target = original if cfg.attack_original else model
    if target is None or y is None:
        raise ValueError("shift 'pgd' needs y and a model (and original= when attack_original)")
    return pgd(target, x, y, cfg.pgd_eps, cfg.pgd_steps, cfg.pgd_step_size, g=g,
               random_start=cfg.pgd_random_start, quantize=cfg.pgd_quantize)


# name -> fn(x_uint8, g, cfg, **context); context = model (a system), y, original (PGD only).
SHIFTS: dict[str, Callable[..., torch.Tensor]] = {
    "gn1": _gn("gn1_sigma"), "gn2": _gn("gn2_sigma"),
    "et1": _et("et1"), "et2": _et("et2"),
    "pgd": _pgd_shift,
}
CORRUPTIONS: tuple[str, ...] = ("gn1", "gn2", "et1", "et2")  # model-free, uint8 -> uint8, cacheable
_PARAMS = {"gn1": ("gn1_sigma",), "gn2": ("gn2_sigma",), "et1": ("et1",), "et2": ("et2",)}


def _check(name: str, allowed=SHIFTS) -> None:
    if name not in allowed:
        raise ValueError(f"unknown shift {name!r}; valid names: {', '.join(allowed)}")


def render(name: str, x: torch.Tensor, seed: int, model: nn.Module | None = None,
           y: torch.Tensor | None = None, cfg: ShiftConfig = ShiftConfig(),
           original: nn.Module | None = None) -> torch.Tensor:
    """Shifted view of uint8 x (N, H, W, 3) with a generator from (seed, name) on x's device.

    Corruptions return uint8 (N, H, W, 3); PGD returns uint8 if cfg.pgd_quantize else float
    (N, 3, H, W), white-box on the system `model` (or on `original` if cfg.attack_original).
    """
    _check(name)
    g = runtime.generator(seed, f"shift-{name}", x.device)
    return SHIFTS[name](x, g, cfg, model=model, y=y, original=original)


def render_cached(name: str, data_fingerprint: str, split_name: str, x: torch.Tensor, seed: int,
                  cfg: ShiftConfig = ShiftConfig()) -> torch.Tensor:
    """render() of a corruption through the cache; key = (shift, params, seed, data, split, device)."""
    _check(name, CORRUPTIONS)
    params = {k: getattr(cfg, k) for k in _PARAMS[name]}
    key = config_hash("shift", name, params, seed, data_fingerprint, split_name,
                      list(x.shape), x.device.type, CHUNK)
    tensors, _, _ = cached_tensors(f"shift-{name}", key,
                                   lambda: ({"x": render(name, x, seed, cfg=cfg)},
                                            {"shift": name, "params": params, "seed": seed,
                                             "split": split_name}))
    return tensors["x"].to(x.device)
