"""Throughput of the exported unlearned system in onnxruntime (CPU) vs θ_o's own ONNX export.

python benchmarks/export_speed.py [--arch resnet18] [--size 32] [--batch 64] [--rounds 7]

θ_o is an fvlib architecture with random weights (throughput does not depend on their values)
and δ a random perturbation. Three ONNX files are written with fvlib's exporter settings (opset
18, dynamic batch): θ_o alone (torch.onnx.export of θ_o), fv.wrap(θ_o) with δ baked in, and with
δ as a second input. Each is run in its own onnxruntime CPU session; the sessions take turns
round by round (so load on a shared machine hits all three alike) and the median images/s per
session is reported, with the ratio θ_o / system (the target: at most 1.05), and the median over
rounds of the same ratio within a round. Eager PyTorch
throughput of θ_o and of the system is measured the same way beside them (onnxruntime's idle
threads do not spin, so they leave the cores to the eager runs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: run uninstalled
from benchmarks import common  # noqa: E402
from fvlib import export, models  # noqa: E402
from fvlib.forget_vector import ForgetVector  # noqa: E402


def sessions(theta_o: torch.nn.Module, system, x: torch.Tensor, folder: Path) -> dict:
    """onnxruntime CPU sessions of θ_o, the baked system and the δ-input system."""
    import onnxruntime as ort
    files = {"theta_o": folder / "theta_o.onnx", "fv_baked": folder / "baked.onnx",
             "fv_delta_input": folder / "delta_input.onnx"}
    export.write_onnx(theta_o, (x,), "baked", files["theta_o"])
    export.write_onnx(system, (x,), "baked", files["fv_baked"])
    export.write_onnx(export.DeltaInput(theta_o).eval(), (x, system.delta), "delta_input",
                      files["fv_delta_input"])
    opts = ort.SessionOptions()
    # idle onnxruntime threads would otherwise spin and steal the cores from the eager runs
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {name: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
            for name, f in files.items()}


def runners(theta_o, system, sess: dict, x: torch.Tensor) -> dict:
    """name -> a function running one batch x (B, 3, H, W)."""
    xn, dn = x.numpy(), system.delta.numpy()
    return {
        "onnx theta_o": lambda: sess["theta_o"].run(None, {"x": xn}),
        "onnx fv_baked": lambda: sess["fv_baked"].run(None, {"x": xn}),
        "onnx fv_delta_input": lambda: sess["fv_delta_input"].run(None, {"x": xn, "delta": dn}),
        "eager theta_o": lambda: theta_o(x),
        "eager fv": lambda: system(x),
    }


def measure(run: dict, batch: int, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Images/s of each runner per round; runners take turns within every round."""
    out: dict[str, list[float]] = {name: [] for name in run}
    for fn in run.values():  # warm-up
        for _ in range(2):
            fn()
    for _ in range(rounds):
        for name, fn in run.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn()
                n += 1
            out[name].append(n * batch / (time.perf_counter() - start))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18", choices=list(models.MODELS))
    p.add_argument("--size", type=int, default=32, help="image side (px)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=2.0, help="per runner and round")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    theta_o = models.build(args.arch, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)).eval()
    system = ForgetVector(torch.randn(3, args.size, args.size) * 0.05).wrap(theta_o).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        sess = sessions(theta_o, system, x[:2], Path(tmp))
        per_round = measure(runners(theta_o, system, sess, x), args.batch, args.rounds, args.seconds)
    median = {k: statistics.median(v) for k, v in per_round.items()}
    base = median["onnx theta_o"]
    result = {"arch": args.arch, "image_size": args.size, "batch": args.batch, "rounds": args.rounds,
              "images_per_s_median": {k: round(v, 1) for k, v in median.items()},
              "images_per_s_rounds": {k: [round(v, 1) for v in vs] for k, vs in per_round.items()},
              "slowdown_vs_theta_o_onnx": {k: round(base / median[f"onnx {k}"], 4)
                                           for k in ("fv_baked", "fv_delta_input")},
              # the same ratio within each round (load changes between rounds), median over rounds
              "slowdown_per_round_median": {
                  k: round(statistics.median(a / b for a, b in zip(per_round["onnx theta_o"],
                                                                   per_round[f"onnx {k}"])), 4)
                  for k in ("fv_baked", "fv_delta_input")},
              "target": "slowdown <= 1.05"}
    label = types.SimpleNamespace(name=f"{args.arch}-{args.size}px", dataset="synthetic", model=args.arch)
    path = common.write_result("export_speed", label, torch.device("cpu"), result, vars(args))
    common.summary("export_speed", path, **result["slowdown_vs_theta_o_onnx"],
                   per_round=result["slowdown_per_round_median"],
                   onnx_theta_o=median["onnx theta_o"], eager_theta_o=median["eager theta_o"])
    return result


if __name__ == "__main__":
    main()
