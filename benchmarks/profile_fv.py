"""Why is fvlib's bf16/channels_last forget-vector loop slower than a plain fp32 eager loop?

python benchmarks/profile_fv.py [PROFILE] [--steps 20] [--top 25]

1. torch.profiler over ~`steps` δ steps of (a) fvlib's `solve` (on a random subset of steps×256
   training images, one epoch, so the table also holds solve's one-off set-up: δ allocation, the
   per-epoch log and θ_o's fingerprint), (b) a plain fp32 NCHW eager loop and (c) the same plain
   loop in bf16 autocast + channels_last; tables of the top ops/kernels by self device time and by
   self CPU time, kernel launches per step and GPU-busy share of the wall time.
2. Timings (no profiler) of the plain loop over the device-resident uint8 data for variants:
   fp32 vs bf16 autocast, channels_last on/off, batch 256 vs 512, TF32 off, augmentation off,
   cuDNN autotuning on, bf16 weights cast once instead of autocast (autocast re-casts frozen
   weights every step: its cast cache holds only leaves that require grad), and a CUDA graph of the
   step (forward, input gradient, SGD; batch gather and augmentation stay eager, copied into static
   buffers), which removes per-kernel launch cost; θ_o's batch norm folded into its convolutions
   (eager, and in the graph with bf16 weights cast once); and fvlib's `solve` itself (batch 256, 512, and with its autocast patched
   out, fp32) as the difference of a 2-epoch and a 1-epoch solve on the full data (one steady epoch).
Every variant runs the same objective on the same θ_o with SGD on δ: (augment ->) x + δ -> model
-> code-form loss -> backward to δ -> step. "bf16" is a no-op on a CPU.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import solve, splits  # noqa: E402
from fvlib.data import to_float  # noqa: E402
from fvlib.runtime import autocast  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Variant:
    """One plain-loop configuration."""
    name: str
    bf16: bool = False
    channels_last: bool = False
    batch: int = 256
    augment: bool = True
    tf32: bool = True              # PyTorch's default for cuDNN convolutions
    cudnn_benchmark: bool = False  # PyTorch's default
    precast: bool = False          # bf16 weights and inputs, no autocast (CUDA only)
    graph: bool = False            # the step as one CUDA graph (CUDA only)
    fold: bool = False             # θ_o's batch norm folded into its convolutions (see `folded`)


VARIANTS = (
    Variant("fp32"), Variant("fp32_cl", channels_last=True),
    Variant("bf16", bf16=True), Variant("bf16_cl", bf16=True, channels_last=True),
    Variant("fp32_b512", batch=512), Variant("fp32_cl_b512", channels_last=True, batch=512),
    Variant("bf16_b512", bf16=True, batch=512),
    Variant("bf16_cl_b512", bf16=True, channels_last=True, batch=512),
    Variant("fp32_no_tf32", tf32=False), Variant("fp32_no_aug", augment=False),
    Variant("bf16_cl_no_aug", bf16=True, channels_last=True, augment=False),
    Variant("fp32_cudnn_bench", cudnn_benchmark=True),
    Variant("bf16_cl_cudnn_bench", bf16=True, channels_last=True, cudnn_benchmark=True),
    Variant("bf16_cl_precast", bf16=True, channels_last=True, precast=True),
    Variant("fp32_graph", graph=True), Variant("bf16_cl_graph", bf16=True, channels_last=True, graph=True),
    Variant("bf16_cl_b512_graph", bf16=True, channels_last=True, batch=512, graph=True),
    # after the first GPU session: inside the graph, autocast's per-step weight casts (~2.7 ms) and
    # batch norm (~1.6 ms) were most of a 4.6 ms step, so measure both removed
    Variant("bf16_cl_fold", bf16=True, channels_last=True, fold=True),
    Variant("bf16_cl_precast_graph", bf16=True, channels_last=True, precast=True, graph=True),
    Variant("bf16_cl_fold_precast_graph", bf16=True, channels_last=True, precast=True, graph=True, fold=True),
    Variant("bf16_cl_b512_fold_precast_graph", bf16=True, channels_last=True, batch=512, precast=True,
            graph=True, fold=True),
)


def folded(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the frozen θ_o with every conv → batch-norm pair folded into one conv: in eval mode
    BN is the affine map y = (x - μ)·γ/σ + β, so it merges into the conv's weight and bias (torch.fx's
    fuse; the same function up to float rounding, fewer kernels and passes over activations)."""
    from torch.fx.experimental.optimization import fuse
    return fuse(copy.deepcopy(model).eval(), inplace=True)



def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero pad) + horizontal flip of uint8 (B, H, W, 3) as ONE gather -> float NCHW."""
    b, h, w, _ = x.shape
    dev = x.device
    xp = F.pad(x.permute(0, 3, 1, 2), (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=dev, generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=dev, generator=g)
    flip = torch.rand(b, 1, 1, 1, device=dev, generator=g) < 0.5
    j = torch.arange(w, device=dev).view(1, 1, 1, w)
    rows = dy + torch.arange(h, device=dev).view(1, 1, h, 1)
    cols = dx + torch.where(flip, w - 1 - j, j)
    out = xp[torch.arange(b, device=dev).view(b, 1, 1, 1), torch.arange(3, device=dev).view(1, 3, 1, 1),
             rows, cols]
    return out.float().div_(255.0)


def objective(z: torch.Tensor, y: torch.Tensor, f: torch.Tensor, delta: torch.Tensor, cfg,
              betas: torch.Tensor) -> torch.Tensor:
    """fvlib's forget-vector loss (solve.batch_loss, K = 1) of logits z (B, C): what solve minimises.

    betas (1,) lives on the device already: a tensor built from a Python list inside a CUDA-graph
    capture is a host-to-device copy, which capture refuses (the first GPU session's graph variants
    failed on exactly that).
    """
    norm = delta.flatten().norm()[None]
    loss, _ = solve.batch_loss(z[None], y, f[None], norm, betas, cfg)
    return loss.sum()


def bf16(dev: torch.device, on: bool) -> contextlib.AbstractContextManager:
    """fvlib's autocast when a variant asks for bf16, else float32."""
    return autocast(dev) if on else contextlib.nullcontext()


@contextlib.contextmanager
def backend(v: Variant):
    """TF32 / cuDNN-autotune switches of a variant for the block, restored afterwards."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = v.tf32, v.cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old


def plain_step(model, data, forget: torch.Tensor, cfg, v: Variant) -> Callable[[], None]:
    """A closure doing one plain δ step of variant v over random batches of the device-resident data."""
    dev = data.device
    if (v.precast or v.graph) and dev.type != "cuda":
        raise NotImplementedError(f"{v.name}: bf16 pre-cast weights and CUDA graphs are measured on CUDA only")
    if v.graph:
        return graphed_step(model, data, forget, cfg, v)
    fmt = torch.channels_last if v.channels_last else torch.contiguous_format
    net = (folded(model) if v.fold else copy.deepcopy(model)).float().to(memory_format=fmt)
    net = net.eval().requires_grad_(False)
    # precast: bf16 weights cast once and bf16 inputs instead of autocast (loss in fp32 either way)
    dtype = torch.bfloat16 if v.precast else torch.float32
    net = net.to(dtype)
    delta = torch.zeros(1, *data.image_shape, device=dev, requires_grad=True)
    opt = torch.optim.SGD([delta], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    g = torch.Generator(device=dev).manual_seed(0)
    n = len(data.train_y)
    betas = torch.tensor([cfg.beta], device=dev)

    def step() -> None:
        idx = torch.randint(0, n, (v.batch,), device=dev, generator=g)
        x = crop_flip(data.train_x[idx], g) if v.augment else to_float(data.train_x[idx])
        with bf16(dev, v.bf16 and not v.precast):
            z = net((x + delta).to(dtype).contiguous(memory_format=fmt))
        loss = objective(z.float(), data.train_y[idx], forget[idx], delta, cfg, betas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def graphed_step(model, data, forget: torch.Tensor, cfg, v: Variant) -> Callable[[], None]:
    """The plain step with forward, input gradient and a hand-written SGD-momentum update on δ
    captured as one CUDA graph; batch gather and augmentation run eagerly into static buffers."""
    dev = data.device
    fmt = torch.channels_last if v.channels_last else torch.contiguous_format
    net = (folded(model) if v.fold else copy.deepcopy(model)).float().to(memory_format=fmt)
    dtype = torch.bfloat16 if v.precast else torch.float32  # precast: weights cast once, no autocast
    net = net.to(dtype).eval().requires_grad_(False)
    delta = torch.zeros(1, *data.image_shape, device=dev, requires_grad=True)
    buf = torch.zeros_like(delta)
    sx = torch.zeros(v.batch, *data.image_shape, device=dev).contiguous(memory_format=fmt)
    sy = torch.zeros(v.batch, dtype=torch.long, device=dev)
    sf = torch.zeros(v.batch, dtype=torch.bool, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    n = len(data.train_y)
    betas = torch.tensor([cfg.beta], device=dev)

    def fill() -> None:
        idx = torch.randint(0, n, (v.batch,), device=dev, generator=g)
        sx.copy_(crop_flip(data.train_x[idx], g) if v.augment else to_float(data.train_x[idx]))
        sy.copy_(data.train_y[idx])
        sf.copy_(forget[idx])

    def body() -> None:
        with bf16(dev, v.bf16 and not v.precast):
            z = net((sx + delta).to(dtype).contiguous(memory_format=fmt))
        loss = objective(z.float(), sy, sf, delta, cfg, betas)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():  # torch.optim.SGD's update: d_p = g + wd·δ; buf = m·buf + d_p; δ -= lr·buf
            buf.mul_(cfg.momentum).add_(grad + cfg.weight_decay * delta)
            delta.sub_(cfg.lr * buf)

    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # warm-up (cuDNN plans, allocator) off the capture
        for _ in range(3):
            fill()
            body()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()

    def step() -> None:
        fill()
        graph.replay()
    return step


def _dev_time(e, self_only: bool) -> float:
    """Device time (µs) of a profiler average across torch versions (device_* vs cuda_* names)."""
    names = ("self_device_time_total", "self_cuda_time_total") if self_only else \
        ("device_time_total", "cuda_time_total")
    for name in names:
        val = getattr(e, name, None)
        if val is not None:
            return float(val)
    return 0.0


# Kernel-name patterns -> category, first match wins (BN and layout before the generic cuDNN match).
CATEGORIES = (
    ("layout", ("nchwtonhwc", "nhwctonchw", "transpose", "permute")),
    ("batchnorm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford")),
    ("conv_gemm", ("conv", "cudnn", "xmma", "implicit", "dgrad", "wgrad", "fprop", "gemm", "cutlass",
                   "sm90", "sm80", "nvjet")),
    ("copy_cast", ("copy", "cast", "convert")),
    ("index_random", ("index", "gather", "scatter", "randperm", "random", "philox", "distribution")),
    ("reduce", ("reduce",)),
    ("elementwise", ("elementwise", "vectorized")),
)


def by_category(rows: list[dict], steps: int) -> dict[str, float]:
    """GPU ms per step by kernel category (only rows with self device time, i.e. kernels/copies)."""
    out: dict[str, float] = {}
    for r in rows:
        if r["self_device_ms"] <= 0:
            continue
        name = r["name"].lower()
        cat = next((c for c, pats in CATEGORIES if any(p in name for p in pats)), "other")
        out[cat] = out.get(cat, 0.0) + r["self_device_ms"] / steps
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def profile_run(fn: Callable[[], None], device: torch.device, steps: int, top: int) -> dict:
    """torch.profiler over fn(): top ops/kernels by self device and self CPU time, launches/step."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    common.sync(device)
    with profile(activities=acts) as prof:
        with common.timer(device) as t:
            fn()
    avg = prof.key_averages()
    rows = [{"name": e.key[:120], "count": e.count,
             "self_device_ms": round(_dev_time(e, True) / 1e3, 3),
             "device_total_ms": round(_dev_time(e, False) / 1e3, 3),
             "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 3),
             "cpu_total_ms": round(e.cpu_time_total / 1e3, 3)} for e in avg]
    busy = sum(r["self_device_ms"] for r in rows)
    launches = sum(r["count"] for r in rows if "LaunchKernel" in r["name"])
    wall_ms = t["seconds"] * 1e3
    return {"steps": steps, "wall_ms": round(wall_ms, 2), "wall_ms_per_step": round(wall_ms / steps, 3),
            "gpu_busy_ms_per_step": round(busy / steps, 3),
            "gpu_busy_share": round(busy / wall_ms, 3) if device.type == "cuda" else None,
            "self_cpu_ms_per_step": round(sum(r["self_cpu_ms"] for r in rows) / steps, 3),
            "kernel_launches_per_step": round(launches / steps, 1),
            "gpu_ms_per_step_by_category": by_category(rows, steps),
            "top_by_self_device": sorted(rows, key=lambda r: -r["self_device_ms"])[:top],
            "all_kernels": sorted((r for r in rows if r["self_device_ms"] > 0),
                                  key=lambda r: -r["self_device_ms"]),
            "top_by_self_cpu": sorted(rows, key=lambda r: -r["self_cpu_ms"])[:top]}


def print_profile(title: str, prof: dict, n: int = 12) -> None:
    """A compact text view of one profile (the JSON has the full tables)."""
    print(f"--- {title}: wall {prof['wall_ms_per_step']} ms/step, GPU busy "
          f"{prof['gpu_busy_ms_per_step']} ms/step (share {prof['gpu_busy_share']}), "
          f"{prof['kernel_launches_per_step']} launches/step", flush=True)
    print(f"  GPU ms/step by category: {prof['gpu_ms_per_step_by_category']}")
    for key, col in (("top_by_self_device", "self_device_ms"), ("top_by_self_cpu", "self_cpu_ms")):
        print(f"  by {col}:")
        for r in prof[key][:n]:
            print(f"    {r[col]:10.3f} ms  x{r['count']:<6} {r['name'][:90]}")


def subset(data, n: int, seed: int = 0):
    """A random n-image training subset (test set kept): `steps` batches of fvlib's solve."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_y), generator=g)[:n].sort().values.to(data.device)
    return dataclasses.replace(data, train_x=data.train_x[idx], train_y=data.train_y[idx],
                               fingerprint=f"{data.fingerprint}-fvbench-sub{n}-{seed}")


def fvlib_epoch_seconds(model, data, split, cfg) -> float:
    """One steady fvlib solve epoch on the full data: a 2-epoch minus a 1-epoch solve."""
    secs = []
    for epochs in (1, 2):
        with common.timer(data.device) as t:
            solve.solve(model, data, split, dataclasses.replace(cfg, epochs=epochs), progress=False)
        secs.append(t["seconds"])
    return max(secs[1] - secs[0], 1e-9)


@contextlib.contextmanager
def fvlib_fp32():
    """fvlib's solver with its bf16 autocast patched out (diagnostic only; skipped if renamed)."""
    if not hasattr(solve, "autocast"):
        raise AttributeError("fvlib.solve no longer imports `autocast`; fp32 variant skipped")
    old = solve.autocast
    solve.autocast = lambda device: contextlib.nullcontext()
    try:
        yield
    finally:
        solve.autocast = old


def fvlib_timings(model, data, split, cfg, flops: float) -> dict:
    """s/epoch and TFLOP/s of fvlib's solve: as shipped (b256, b512) and with autocast patched out."""
    n = len(data.train_y)
    out = {}
    for name, batch, fp32 in (("fvlib_bf16_cl", 256, False), ("fvlib_bf16_cl_b512", 512, False),
                              ("fvlib_fp32", 256, True)):
        c = dataclasses.replace(cfg, batch_size=batch)
        try:
            if fp32:  # NCHW weights; fvlib's inputs stay channels_last-strided, so cuDNN may pick NHWC
                net = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)
                with fvlib_fp32():
                    s = fvlib_epoch_seconds(net, data, split, c)
            else:
                s = fvlib_epoch_seconds(model, data, split, c)
        except AttributeError as err:
            out[name] = {"skipped": str(err)}
            continue
        out[name] = {"batch": batch, "seconds_per_epoch": round(s, 3),
                     "ms_per_step": round(1e3 * s / math.ceil(n / batch), 3),
                     "tflops": common.tflops(flops, n, s)}
        print(f"{name}: {out[name]}", flush=True)
    return out


def plain_timings(model, data, split, cfg, flops: float, steps: int) -> dict:
    """ms/step, s/epoch and TFLOP/s of every plain-loop variant."""
    n = len(data.train_y)
    out = {}
    for v in VARIANTS:
        try:
            with backend(v):
                sec = common.time_steps(plain_step(model, data, split.forget, cfg, v), data.device,
                                        steps, warmup=5 if v.cudnn_benchmark else 3)
        except Exception as err:  # noqa: BLE001  one failing experiment must not end the others
            out[v.name] = {**dataclasses.asdict(v), "skipped": f"{type(err).__name__}: {err}"[:300]}
            print(f"{v.name}: skipped ({out[v.name]['skipped']})", flush=True)
            continue
        out[v.name] = {**dataclasses.asdict(v), "ms_per_step": round(sec * 1e3, 3),
                       "seconds_per_epoch": round(sec * math.ceil(n / v.batch), 3),
                       "tflops": common.tflops(flops, v.batch, sec)}
        print(f"{v.name}: {out[v.name]['ms_per_step']} ms/step, "
              f"{out[v.name]['seconds_per_epoch']} s/epoch, {out[v.name]['tflops']} TFLOP/s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Profile fvlib's solver and the plain loops, then time the variants."""
    p = common.parser(__doc__)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    profile, data = common.load(args.profile)
    dev = data.device
    model, _ = common.theta_o(profile, data)
    cfg = profile.fv
    split = splits.classwise(data, 0)
    flops = common.delta_flops_per_image(model, data.image_shape, data.num_classes, dev)
    result = {"steps": args.steps, "gflop_per_delta_image": round(flops / 1e9, 4),
              "train_images": len(data.train_y), "profiles": {}}

    sub = subset(data, args.steps * cfg.batch_size)
    sub_split = splits.classwise(sub, 0)
    one = dataclasses.replace(cfg, epochs=1)
    solve.solve(model, sub, sub_split, one, progress=False)  # warm-up
    runs = {"fvlib_solve": lambda: solve.solve(model, sub, sub_split, one, progress=False)}
    for v in (VARIANTS[0], VARIANTS[3]):
        step = plain_step(model, data, split.forget, cfg, v)
        for _ in range(3):
            step()  # warm-up
        runs[f"plain_{v.name}"] = lambda step=step: [step() for _ in range(args.steps)]
    sub_steps = math.ceil(len(sub.train_y) / cfg.batch_size)  # < steps on a small dataset
    for name, fn in runs.items():
        n_steps = sub_steps if name == "fvlib_solve" else args.steps
        result["profiles"][name] = profile_run(fn, dev, n_steps, args.top)
        print_profile(name, result["profiles"][name])
        common.write_result("profile_fv", profile, dev, result, cfg)

    result["fvlib_solve"] = fvlib_timings(model, data, split, cfg, flops)
    result["plain"] = plain_timings(model, data, split, cfg, flops, args.steps)
    every = {**result["fvlib_solve"], **result["plain"]}
    timed_ok = {k: r for k, r in every.items() if "seconds_per_epoch" in r}
    result["fastest"] = min(timed_ok, key=lambda k: timed_ok[k]["seconds_per_epoch"])
    path = common.write_result("profile_fv", profile, dev, result, cfg)
    spe = lambda k: every.get(k, {}).get("seconds_per_epoch")  # noqa: E731
    common.summary("profile_fv", path, profile=profile.name, fvlib_s_per_epoch=spe("fvlib_bf16_cl"),
                   fvlib_fp32_s_per_epoch=spe("fvlib_fp32"), plain_fp32=spe("fp32"),
                   plain_bf16_cl=spe("bf16_cl"), fastest=result["fastest"],
                   fastest_s_per_epoch=spe(result["fastest"]), device=common.device_slug(dev))
    return result


if __name__ == "__main__":
    main()
