"""Your classifier behind fvlib's interface: (B, 3, H, W) pixels in [0, 1] -> (B, C) logits.

`ModelAdapter` puts the model's own input size (bilinear resize) and normalisation (mean/std
buffers) inside one nn.Module, so a forget vector δ lives in the data's [0, 1] pixel space, as it
does for fvlib's own models. `load` accepts an in-memory nn.Module, a torch.export program file
(.pt2), a TorchScript file, or a torchvision architecture name plus a state-dict file
("resnet18:weights.pth"). `check` runs the model once and turns every misfit (input layout,
output shape, class count) into one error that says how to fix it. `cam_layer` picks the layer
Grad-CAM hooks: an override, else the last convolution.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fvlib.data import ImageData, to_float
from fvlib.models import Normalize

ModelSource = nn.Module | str | Path


class ModelError(ValueError):
    """A model that cannot be used as given; the message names the problem and the fix."""


class CamUnavailable(ModelError):
    """Grad-CAM cannot hook a layer of this model."""


class ModelAdapter(nn.Module):
    """model(normalise(resize(x))) for x (B, 3, H, W) in [0, 1]; δ is added before all of it."""

    def __init__(self, model: nn.Module, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, input_size: Sequence[int] | None = None,
                 cam_layer: str | None = None, source: str = "nn.Module"):
        super().__init__()
        if (mean is None) != (std is None):
            raise ModelError("give both mean and std (the model's input normalisation), or neither "
                             "(the model takes [0, 1] pixels)")
        self.model = model
        self.normalize = Normalize(tuple(mean), tuple(std)) if mean is not None else nn.Identity()
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        self.cam_layer = cam_layer  # module path inside self.model, or None: the last convolution
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            # antialias off: ONNX's Resize has no antialiasing, and exported = eager is checked
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.model(self.normalize(x))

    @property
    def is_torchscript(self) -> bool:
        return isinstance(self.model, torch.jit.ScriptModule)


# ----------------------------------------------------------------------------- loading

def load(source: ModelSource, num_classes: int | None = None) -> tuple[nn.Module, str]:
    """(model, description) from an nn.Module, a .pt2 / TorchScript file or "arch:state_dict".

    num_classes sizes a torchvision architecture's head (the data's class count).
    """
    if isinstance(source, nn.Module):
        return source, f"nn.Module {type(source).__name__}"
    text = str(source)
    arch, sep, weights = text.partition(":")
    if sep and arch in _torchvision_names():
        return torchvision_model(arch, weights, num_classes), f"torchvision {arch} + {weights}"
    path = Path(text).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {text!r} does not exist; give a .pt2 program (torch.export.save), "
                         "a TorchScript file (torch.jit.save) or 'arch:weights.pth' with a torchvision "
                         f"architecture ({', '.join(_torchvision_names()[:4])}, ...)")
    return load_file(path)


def load_file(path: Path) -> tuple[nn.Module, str]:
    """A torch.export program (.pt2) or a TorchScript file -> (nn.Module, description).

    Both are zip archives; their entries tell them apart (a program has models/*.json, TorchScript
    has code/), so a foreign file gets one error instead of two loaders' tracebacks.
    """
    kind = _archive_kind(path)
    try:
        if kind == "pt2":
            return _load_program(path), f"pt2 {path}"
        if kind == "torchscript":
            return _load_torchscript(path), f"torchscript {path}"
    except Exception as err:  # a damaged archive of the right kind
        raise ModelError(f"cannot load {path} as a {kind} file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); save it again") from err
    what = {"checkpoint": "a torch.save checkpoint (weights without code)",
            "zip": "a zip archive of another kind", None: "not a zip archive"}[kind]
    raise ModelError(f"{path} is neither a torch.export program (.pt2) nor a TorchScript file: it is "
                     f"{what}. Save the model with torch.export.save(torch.export.export(model, (x,)), "
                     "'model.pt2'), or give a state dict with its architecture, e.g. 'resnet18:weights.pth'.")


def _archive_kind(path: Path) -> str | None:
    """'pt2', 'torchscript', 'checkpoint' (torch.save), 'zip' (other) or None (not a zip)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any("/models/" in n and n.endswith(".json") for n in names) or "archive_format" in {
            n.rsplit("/", 1)[-1] for n in names}:
        return "pt2"
    if any("/code/" in n for n in names):
        return "torchscript"
    return "checkpoint" if any(n.endswith("data.pkl") for n in names) else "zip"


def _load_program(path: Path) -> nn.Module:
    """A .pt2 program as a module with its submodule hierarchy (so Grad-CAM can hook a layer)."""
    return _program_module(torch.export.load(str(path)))


def _program_module(program) -> nn.Module:
    """An ExportedProgram unflattened (submodules kept, train()/eval() work), with its input shape
    and convolution layers noted for the checks and Grad-CAM."""
    module = torch.export.unflatten(program)
    module.program_input_shape = _program_input_shape(program)
    module.program_conv_layers = _program_convs(program)
    return module


def _load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():  # torch.jit is deprecated in current torch; loading still works
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")


def _program_input_shape(program) -> tuple | None:
    """Shape of a program's first user input, with None for a dynamic dimension."""
    name = program.graph_signature.user_inputs[0] if program.graph_signature.user_inputs else None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == name and "val" in node.meta:
            return tuple(int(s) if isinstance(s, int) else None for s in node.meta["val"].shape)
    return None


def _program_convs(program) -> list[str]:
    """Module paths of a program's convolutions, in graph order (from nn_module_stack metadata)."""
    out = []
    for node in program.graph.nodes:
        name = str(getattr(node.target, "__name__", node.target))
        if node.op == "call_function" and name.split(".")[0] in ("conv2d", "convolution"):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            if stack and stack[-1][0]:
                out.append(str(stack[-1][0]))
    return out


def _torchvision_names() -> list[str]:
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(arch: str, weights: str | Path, num_classes: int | None) -> nn.Module:
    """A torchvision classifier with num_classes outputs and the weights of a state-dict file."""
    import torchvision
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"state-dict file {str(weights)!r} for {arch} does not exist")
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes or 1000)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors of a foreign or unsafe file
        raise ModelError(f"cannot read {path} as a state dict ({type(err).__name__}: {err}); save it "
                         "with torch.save(model.state_dict(), path)") from err
    model.load_state_dict(_check_state(_unwrap_state(state), model, arch, path))
    return model.eval()


def _unwrap_state(state) -> dict:
    """The tensor dict inside common checkpoint layouts ({'state_dict': ...}, DataParallel's module.)."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"expected a state dict (name -> tensor), got a {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_state(state: dict, model: nn.Module, arch: str, path: Path) -> dict:
    """Raise ModelError naming missing, unexpected and mis-shaped entries unless state fits model."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs {arch} {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or extra or shapes):
        return state
    show = lambda items: ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")  # noqa: E731
    parts = [f"missing {show(missing)}" if missing else "", f"unexpected {show(extra)}" if extra else "",
             f"shape mismatch {show(shapes)}" if shapes else ""]
    raise ModelError(f"the state dict in {path} does not fit torchvision's {arch}: "
                     + "; ".join(p for p in parts if p) + ". Name the architecture it was saved from, "
                     "and check that its head has the folder's number of classes.")


# ----------------------------------------------------------------------------- checks

def check(adapter: ModelAdapter, data: ImageData) -> int:
    """Run the model on two test images; raise ModelError unless it maps (B, 3, H, W) -> (B, C)
    logits with C = the folder's class count. Returns C."""
    h, w = data.image_shape[1:]
    x = to_float(data.test_x[:2])
    shape = _static_batch(adapter)
    try:
        with torch.no_grad():
            out = _eval_forward(adapter, x)
    except Exception as err:  # any failure of the user's forward
        fix = (f"it was exported for batch size {shape[0]} only: re-export it with a dynamic batch "
               "dimension, dynamic_shapes={'x': {0: torch.export.Dim('batch')}}" if shape else
               f"fvlib feeds float32 (B, 3, {h}, {w}) RGB in [0, 1]; set the model's input size "
               "(model_size) and normalisation (mean/std) if it expects others")
        raise ModelError(f"the model fails on a batch of shape (2, 3, {h}, {w}): {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}. {fix}.") from err
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"the model must return (B, C) logits, got {got} for a batch of 2 images; "
                         "wrap it so that forward returns the logits tensor alone")
    if out.shape[1] != data.num_classes:
        raise ModelError(f"the model returns {out.shape[1]} class scores but {data.name} has "
                         f"{data.num_classes} classes ({', '.join(data.classes[:5])}...); point DATA_ROOT "
                         "at the folder the model was trained on, or give it a head with "
                         f"{data.num_classes} outputs")
    return int(out.shape[1])


def _static_batch(adapter: ModelAdapter) -> tuple | None:
    """A .pt2 program's input shape when its batch dimension is fixed to something other than 2."""
    shape = getattr(adapter.model, "program_input_shape", None)
    return shape if shape and shape[0] not in (None, 2) else None


def _eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) in eval mode, every module's mode restored afterwards."""
    from fvlib.models import frozen
    with frozen(model):
        return model(x)


def input_size(model: nn.Module, data_shape: Sequence[int]) -> tuple[int, int] | None:
    """(H, W) a .pt2 program was exported for, when fixed and unlike the data's; else None."""
    shape = getattr(model, "program_input_shape", None)
    if shape and len(shape) == 4 and None not in shape[2:] and tuple(shape[2:]) != tuple(data_shape[-2:]):
        return int(shape[2]), int(shape[3])
    return None


# ----------------------------------------------------------------------------- Grad-CAM layer

def cam_layer(adapter: nn.Module) -> nn.Module:
    """The layer Grad-CAM hooks in an adapter: its override, else the last Conv2d (last convolution
    of a .pt2 program). Raises CamUnavailable with the fix when there is none to hook."""
    inner = adapter.model
    if adapter.cam_layer:
        try:
            return inner.get_submodule(adapter.cam_layer)
        except AttributeError:
            names = [n for n, _ in inner.named_modules() if n][-5:]
            raise CamUnavailable(f"cam_layer {adapter.cam_layer!r} is not a module of the model; "
                                 f"its last modules are {names}") from None
    if isinstance(inner, torch.jit.ScriptModule):
        raise CamUnavailable(
            "Grad-CAM hooks a layer, but a TorchScript model runs its layers in the TorchScript "
            "interpreter, where Python hooks do not fire (torch: register_forward_hook is not "
            "supported on ScriptModules). Load the model as an nn.Module or as a .pt2 program "
            "(torch.export.save) for Grad-CAM panels; solving, metrics and export work as they are.")
    convs = getattr(inner, "program_conv_layers", None)
    if convs is not None:
        if not convs:
            raise CamUnavailable("the .pt2 program records no convolution module (no nn_module_stack "
                                 "metadata); name the layer to hook with cam_layer='path.to.layer'")
        return inner.get_submodule(convs[-1])
    last = [m for m in inner.modules() if isinstance(m, nn.Conv2d)]
    if not last:
        raise CamUnavailable("the model has no nn.Conv2d for Grad-CAM; name the layer to hook with "
                             "cam_layer='path.to.layer'")
    return last[-1]


# ----------------------------------------------------------------------------- export helper

def traceable(adapter: ModelAdapter, example: torch.Tensor) -> ModelAdapter:
    """An equivalent adapter that torch.export can trace: a TorchScript model is converted to a
    torch.export program (torch's TS2EP converter); other models are returned as they are.

    example: (B, 3, H, W) batch in [0, 1] with B >= 2 (the converter traces it)."""
    if not adapter.is_torchscript:
        return adapter
    try:
        from torch._export.converter import TS2EPConverter  # torch's own converter (not public API)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner_x = adapter.normalize(F.interpolate(example, size=adapter.input_size, mode="bilinear",
                                                      align_corners=False) if adapter.input_size else example)
            program = TS2EPConverter(adapter.model, (inner_x,)).convert()
    except Exception as err:  # the converter covers most, not all, TorchScript programs
        raise ModelError(f"this TorchScript model cannot be converted for export ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); export the original model "
                         "with torch.export.save and load the .pt2 instead") from err
    out = ModelAdapter(_program_module(program), input_size=adapter.input_size,
                       cam_layer=adapter.cam_layer, source=f"{adapter.source} (converted)")
    out.normalize = adapter.normalize
    return out
