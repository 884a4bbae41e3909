"""The unlearned system fv.wrap(θ_o) as deployable files: ONNX and torch.export (.pt2), each checked.

Two forms of each format:
  * `baked`: δ is a constant of the graph; input x (B, 3, H, W) float32 RGB in [0, 1];
  * `delta_input`: δ (3, H, W) is a second graph input, so one deployed graph forgets whatever it
    is fed (another class's vector, a sum of vectors) without redeployment.
Every file is checked against eager PyTorch on the whole test set (|Δ logit| within 1e-5 of
max(1, |logit|), identical predictions; ONNX through onnxruntime's CPU provider) and gets a model
card (JSON) beside it, which records the absolute max |Δ logit| too.
An export is a folder written atomically: complete, every file checked and carded, or absent.
Exporting leaves θ_o as it was: every module's train/eval mode is restored one by one (an
exporter that restores only the wrapper's mode would put θ_o's BatchNorm in train mode).

Command line: `python -m fvlib.export --help`.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from fvlib import __version__, models
from fvlib.adapter import ModelAdapter, traceable
from fvlib.cache import file_sha256, write_json
from fvlib.data import ImageData, to_float
from fvlib.forget_vector import ForgetVector, Perturbed, perturb, unwrap
from fvlib.provenance import git_sha

FORMATS = ("pt2", "onnx")  # pt2 first: when ONNX then fails, the .pt2 is known to work
FORMS = ("baked", "delta_input")
OPSET = 18                 # ONNX opset (>= 17: LayerNormalization and friends as single ops)
TOLERANCE = 1e-5           # max |Δ logit| / max(1, |logit|) in float32 between a file and eager


class ExportError(RuntimeError):
    """An export that cannot be written or does not match eager PyTorch."""


class UnsupportedOperator(ExportError):
    """The model uses an operator ONNX cannot express."""


class DeltaInput(nn.Module):
    """θ_o(x + δ) with δ (3, H, W) as a second input: the `delta_input` form."""

    def __init__(self, model: nn.Module, clamp: bool = False):
        super().__init__()
        self.model = model
        self.clamp = clamp

    def forward(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return self.model(perturb(x, delta, self.clamp))


# ----------------------------------------------------------------------------- writing one file

def _example(data: ImageData) -> torch.Tensor:
    """Two test images (2, 3, H, W) in [0, 1]: the example input the exporters trace."""
    return to_float(data.test_x[:2].cpu())


def _dynamic(form: str) -> dict:
    batch = torch.export.Dim("batch")
    return {"x": {0: batch}, "delta": None} if form == "delta_input" else {"x": {0: batch}}


def _args(form: str, x: torch.Tensor, delta: torch.Tensor) -> tuple:
    return (x, delta) if form == "delta_input" else (x,)


def write_pt2(module: nn.Module, args: tuple, form: str, path: Path) -> None:
    """torch.export program of module (dynamic batch) saved to path."""
    program = torch.export.export(module, args, dynamic_shapes=_dynamic(form))
    torch.export.save(program, str(path))


def write_onnx(module: nn.Module, args: tuple, form: str, path: Path, opset: int = OPSET) -> None:
    """ONNX graph of module (dynamic batch) through torch's exporter; an operator without an ONNX
    translation raises UnsupportedOperator naming it."""
    names = ["x", "delta"] if form == "delta_input" else ["x"]
    try:
        torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, verbose=False,
                          input_names=names, output_names=["logits"], dynamic_shapes=_dynamic(form),
                          external_data=False)
    except Exception as err:  # the exporter wraps failures of its three steps in several types
        ops = _unsupported_ops(err)
        if ops:
            raise UnsupportedOperator(
                f"ONNX cannot express operator {', '.join(ops)} used by the model (the ONNX exporter "
                "has no translation for it). The .pt2 export still works: export with "
                "formats=('pt2',) (command line: --format pt2), or register an ONNX translation "
                "(torch.onnx.export(..., custom_translation_table=...)).") from err
        first = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise ExportError(f"ONNX export failed: {first}; the .pt2 export may still work "
                          "(formats=('pt2',))") from err


def _unsupported_ops(err: BaseException) -> list[str]:
    """Operator names (ns::op) the ONNX exporter found no function for, from its error chain."""
    found, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for ns, op in re.findall(r"No ONNX function found for <OpOverload\(op='([\w]+)\.([\w]+)'", str(err)):
            found.append(f"{ns}::{op}")
        err = err.__cause__ or err.__context__
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------- checking one file

def _runner(path: Path, fmt: str, form: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function (x, δ) -> logits that runs the written file (onnxruntime CPU, or the .pt2)."""
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(x, delta):
            feed = dict(zip(names, [a.numpy() for a in _args(form, x, delta)]))
            return torch.from_numpy(session.run(["logits"], feed)[0])
        return run_onnx
    program = torch.export.load(str(path)).module()
    return lambda x, delta: program(*_args(form, x, delta))


@torch.no_grad()
def check_file(path: Path, fmt: str, form: str, system: Perturbed, data: ImageData,
               tolerance: float = TOLERANCE, relative: bool = True, batch_size: int = 500) -> dict:
    """Compare a written file with eager system on the whole test set (same batches, fp32).

    Passes when every |Δ logit| <= tolerance · max(1, |eager logit|) (relative, the default: two
    runtimes' fp32 convolutions differ by a few units in the last place of the logit, so a fixed
    1e-5 would fail logits above ~10 on some CPUs) or <= tolerance (relative=False), and the
    predictions are identical wherever eager's top-two logits differ by more than the tolerance
    (closer than that, a tie may break either way: counted, not failed)."""
    run = _runner(path, fmt, form)
    delta = system.delta.detach().cpu().float()
    worst, scaled, largest, mismatches, ties, n = 0.0, 0.0, 0.0, 0, 0, 0
    for chunk in data.test_x.cpu().split(batch_size):
        x = to_float(chunk).contiguous()
        eager, out = system(x).float(), run(x, delta).float()
        diff = (eager - out).abs()
        worst = max(worst, diff.max().item())
        scaled = max(scaled, (diff / eager.abs().clamp(min=1.0)).max().item())
        largest = max(largest, eager.abs().max().item())
        top2 = eager.topk(min(2, eager.shape[1]), dim=1).values
        tie = (top2[:, 0] - top2[:, -1]) <= tolerance * top2[:, 0].abs().clamp(min=1.0)
        differ = eager.argmax(1) != out.argmax(1)
        mismatches += int((differ & ~tie).sum())
        ties += int((differ & tie).sum())
        n += len(x)
    within = (scaled if relative else worst) <= tolerance
    return {"images": n, "max_abs_logit_diff": worst, "max_scaled_logit_diff": scaled,
            "max_abs_logit": largest,
            "prediction_mismatches": mismatches, "tie_flips": ties, "tolerance": tolerance,
            "tolerance_mode": "relative: |Δ| <= tol·max(1, |logit|)" if relative else "absolute",
            "passed": within and mismatches == 0}


# ----------------------------------------------------------------------------- the bundle

def _stage(out: Path) -> Path:
    stage = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    stage.mkdir(parents=True)
    return stage


def _publish(stage: Path, out: Path) -> None:
    """Move the finished stage folder to out (an older export there is replaced, never mixed)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _card(path: Path, fmt: str, form: str, system: Perturbed, data: ImageData, check: dict,
          info: dict, opset: int) -> dict:
    """The model card of one exported file: what it is, what it forgets, how it was checked."""
    h, w = data.image_shape[1:]
    inputs = [{"name": "x", "shape": ["batch", 3, h, w], "dtype": "float32",
               "meaning": "RGB images in [0, 1] (divide 8-bit pixels by 255), NCHW"}]
    if form == "delta_input":
        inputs.append({"name": "delta", "shape": [3, h, w], "dtype": "float32",
                       "meaning": "the forget vector δ in pixel space (forget_vector.safetensors, "
                                  "tensor 'delta'); zeros = θ_o itself"})
    delta = system.delta.detach().float()
    versions = {"fvlib": __version__, "git_sha": git_sha(), "torch": torch.__version__}
    if fmt == "onnx":
        import onnx
        import onnxruntime
        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__, opset=opset)
    return {"kind": "fvlib unlearned system", "file": path.name, "sha256": file_sha256(path),
            "format": fmt, "form": form, "inputs": inputs,
            "outputs": [{"name": "logits", "shape": ["batch", data.num_classes], "dtype": "float32"}],
            "classes": list(data.classes),
            "theta_o": {"fingerprint": models.fingerprint(unwrap(system)), **info.get("theta_o", {})},
            "forget": info.get("forget"), "dataset": {"name": data.name, "fingerprint": data.fingerprint},
            "delta": {"l2": delta.norm().item(), "linf": delta.abs().max().item(),
                      "clamp": bool(system.clamp), "baked_in": form == "baked"},
            "metrics": info.get("metrics"), "check": check,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **versions}


FILE_NAMES = {"baked": "unlearned", "delta_input": "unlearned_delta_input"}


def export(system: Perturbed, data: ImageData, out: str | Path, info: dict | None = None,
           formats: Sequence[str] = FORMATS, forms: Sequence[str] = FORMS, opset: int = OPSET,
           tolerance: float = TOLERANCE, relative: bool = True) -> dict[str, dict]:
    """Write, check and card every (format, form) of the unlearned system into the folder out.

    info: what the cards record besides the file: {'theta_o': {...}, 'forget': {...},
    'metrics': {...}}. tolerance / relative: the check's bound on |Δ logit| (see check_file).
    Returns {file name: card}. Raises (and writes nothing) if any file fails its check.
    """
    _check_request(system, formats, forms, opset)
    out = Path(out)
    stage = _stage(out)
    try:
        cards = _write_all(system, data, stage, info or {}, formats, forms, opset, (tolerance, relative))
        ForgetVector(system.delta.detach().cpu(), {"clamp": system.clamp}).save(
            stage / "forget_vector.safetensors")
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return cards


def _on_cpu(model: nn.Module) -> nn.Module:
    """model itself when it lives on the CPU, else a CPU copy (θ_o stays where it is)."""
    on_cpu = all(t.device.type == "cpu" for t in list(model.parameters()) + list(model.buffers()))
    return model if on_cpu else copy.deepcopy(model).cpu()


def _check_request(system: nn.Module, formats, forms, opset: int) -> None:
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
        raise ExportError(f"export needs torch >= 2.6 (torch.onnx.export(dynamo=True) with dynamic "
                          f"shapes), this is torch {torch.__version__}; upgrade torch")
    if not isinstance(system, Perturbed):
        raise ExportError(f"export takes the unlearned system fv.wrap(θ_o), got {type(system).__name__}")
    bad = [f for f in formats if f not in FORMATS] + [f for f in forms if f not in FORMS]
    if bad or not formats or not forms:
        raise ExportError(f"unknown or no format/form {bad}; formats: {', '.join(FORMATS)}; "
                          f"forms: {', '.join(FORMS)}")
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; use 17 or newer (default {OPSET})")


def _write_all(system: Perturbed, data: ImageData, stage: Path, info: dict, formats, forms,
               opset: int, tolerance: tuple[float, bool]) -> dict[str, dict]:
    """Every requested file in stage, each checked (a failed check raises) and carded."""
    cards = {}
    eager = Perturbed(_on_cpu(unwrap(system)), system.vector.to("cpu"))
    # frozen: eval mode and frozen weights for export and check; each module's mode is restored
    # one by one afterwards, whatever the exporter does to the wrapper's mode
    with models.frozen(system), models.frozen(eager):
        x = _example(data)
        inner = unwrap(eager)
        inner = traceable(inner, x) if isinstance(inner, ModelAdapter) else inner
        modules = {"baked": Perturbed(inner, eager.vector),
                   "delta_input": DeltaInput(inner, eager.clamp)}
        for fmt in [f for f in FORMATS if f in formats]:
            for form in forms:
                path = stage / f"{FILE_NAMES[form]}.{fmt}"
                start = time.perf_counter()
                args = _args(form, x, eager.delta)
                with models.frozen(modules[form]):
                    (write_pt2 if fmt == "pt2" else write_onnx)(modules[form], args, form, path, *(
                        (opset,) if fmt == "onnx" else ()))
                check = check_file(path, fmt, form, eager, data, *tolerance)
                check["export_seconds"] = time.perf_counter() - start
                if not check["passed"]:
                    raise ExportError(f"{path.name} differs from eager PyTorch: max |Δ logit| "
                                      f"{check['max_abs_logit_diff']:.3g} (scaled "
                                      f"{check['max_scaled_logit_diff']:.3g}; tolerance {tolerance[0]:g}, "
                                      f"{check['tolerance_mode']}), {check['prediction_mismatches']} "
                                      f"different predictions on {check['images']} test images; "
                                      "nothing was written")
                cards[path.name] = _card(path, fmt, form, eager, data, check, info, opset)
                write_json(stage / f"{path.name}.json", cards[path.name])
    return cards


def summary(cards: dict[str, dict]) -> pd.DataFrame:
    """One row per exported file: format, form, its check against eager PyTorch, size, seconds."""
    rows = {name: {"format": c["format"], "form": c["form"], "images": c["check"]["images"],
                   "max |Δ logit|": f"{c['check']['max_abs_logit_diff']:.1e}",
                   "max |Δ|/max(1,|logit|)": f"{c['check']['max_scaled_logit_diff']:.1e}",
                   "different predictions": c["check"]["prediction_mismatches"],
                   "passed": c["check"]["passed"], "export s": round(c["check"]["export_seconds"], 1)}
            for name, c in cards.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("file")


# ----------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fvlib.export",
        description="Export θ_o behind a forget vector (ONNX and .pt2, δ baked in or as an input), "
                    "check every file against PyTorch on the folder's test set, and write a model "
                    "card beside each. Example: python -m fvlib.export --model model.pt2 --data "
                    "my_images/ --vector forget_cat.safetensors --out exports/cat")
    p.add_argument("--model", required=True,
                   help="θ_o: a .pt2 program, a TorchScript file, 'arch:weights.pth' (torchvision), "
                        "or 'train:small_cnn' (the model fvlib trains on --data)")
    p.add_argument("--data", default="", help="image folder or archive with train/<class>/ and "
                                              "test/<class>/ (default: the embedded digits)")
    p.add_argument("--vector", required=True, help="forget vector file (ForgetVector.save)")
    p.add_argument("--out", required=True, help="output folder (replaced as a whole when it exists)")
    p.add_argument("--mean", type=float, nargs=3, help="the model's input normalisation mean (RGB)")
    p.add_argument("--std", type=float, nargs=3, help="the model's input normalisation std (RGB)")
    p.add_argument("--model-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the model's input size, when unlike the images'")
    p.add_argument("--image-size", type=int, help="bring every image to this square size")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), dest="formats")
    p.add_argument("--form", nargs="+", choices=FORMS, default=list(FORMS), dest="forms")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}, >= 17)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"bound on |Δ logit| / max(1, |logit|) vs PyTorch (default {TOLERANCE:g})")
    p.add_argument("--absolute", action="store_true", help="bound |Δ logit| itself by --tolerance")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip UA/RA/TA/MIA-Efficacy (computed for the card when the vector names its "
                        "forget set)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Load θ_o, the data and the vector, export, and print one line per file; 1 on an error."""
    args = _parser().parse_args(argv)
    from fvlib import own_model
    try:
        fv = ForgetVector.load(args.vector, None)
        forget = fv.meta.get("forget_request") or []
        own = own_model.setup(args.model, args.data, forget or None, mean=args.mean, std=args.std,
                              model_size=args.model_size, image_size=args.image_size, ci=False,
                              progress=False)
        metrics = None if args.no_metrics or not forget else own.metrics_for_card(fv)
        cards = own.export(fv, args.out, metrics=metrics, formats=args.formats, forms=args.forms,
                           opset=args.opset, tolerance=args.tolerance, relative=not args.absolute)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"fvlib.export: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    for name, card in cards.items():
        c = card["check"]
        print(f"{Path(args.out) / name}: max |Δ logit| {c['max_abs_logit_diff']:.2e} on {c['images']} "
              f"test images, {c['prediction_mismatches']} different predictions (card: {name}.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
