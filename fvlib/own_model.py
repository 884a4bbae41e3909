"""Forget vectors for your own classifier on your own image folder (notebook 08): one setup call.

`setup(MODEL, DATA_ROOT, FORGET)` loads the data (any image folder or archive with
train/<class>/ and test/<class>/, or the embedded digits), resolves the forget set (one class
name, several, or training files), loads or trains θ_o and puts it behind a `ModelAdapter`
(its own input size and normalisation inside, so δ stays in [0, 1] pixel space), checks it,
and states its accuracy. The returned `OwnModel` then solves, evaluates, draws Grad-CAM panels,
retrains (for a model trained here) and exports, all through fvlib's one path (data, splits,
solve, metrics, cam, train, export). MODEL is an nn.Module, a .pt2 program, a TorchScript file,
'arch:weights.pth' (torchvision), or 'train:<fvlib architecture>' (trained here on the folder).
Under CI (env CI set) it swaps in the digits and a small CNN trained in seconds, visibly. All of
it runs on the CPU (it needs no GPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from fvlib import adapter, cam, export, figures, metrics, models, splits, train
from fvlib.adapter import ModelAdapter, ModelSource
from fvlib.config import SMOKE_TRAIN
from fvlib.data import ImageData, load, load_folder
from fvlib.forget_vector import ForgetVector
from fvlib.paths import data_dir
from fvlib.provenance import provenance
from fvlib.runtime import seed_everything
from fvlib.solve import FVConfig, solve
from fvlib.splits import Split
from fvlib.train import TrainConfig

TRAIN_PREFIX = "train:"
CI_MODEL = "train:small_cnn"
# θ_o trained here: the smoke recipe (one-cycle, batch 128, lr 0.1), 15 epochs unless told
RECIPE = SMOKE_TRAIN
# Class-wise and multi-class forget sets: the authors' code defaults (40 epochs, Beta 3); files
# (instance-wise) use Beta 1, the paper's random-forgetting setting (docs/protocol.md P4.2).
FV_CLASSES = FVConfig()
FV_FILES = FVConfig(beta=1.0, lambda1=1.0)


@dataclasses.dataclass
class OwnModel:
    """Your θ_o (behind its adapter), your data and forget set, and what was measured on them."""
    name: str                  # output folder: figures/<name>/, data/exports/<name>/
    data: ImageData
    model: ModelAdapter        # θ_o: (B, 3, H, W) in [0, 1] -> (B, C) logits
    split: Split
    forget: list[str]          # the forget set as requested (class names or files)
    info: dict                 # θ_o: source, fingerprint, train_acc, test_acc, train_seconds
    fv_config: FVConfig
    arch: str | None = None    # fvlib architecture when θ_o was trained here (enables Retrain)
    recipe: TrainConfig | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ θ_o
    def original_info(self) -> pd.DataFrame:
        """θ_o's train and test accuracy (%) with the set sizes."""
        i = self.info
        return pd.DataFrame({"accuracy %": [100 * i["train_acc"], 100 * i["test_acc"]],
                             "images": [len(self.data.train_y), len(self.data.test_y)]},
                            index=pd.Index(["train", "test"], name="θ_o"))

    def describe(self) -> str:
        """One paragraph: data, forget set, model."""
        d, s = self.data, self.split
        what = (f"{int(s.forget.sum())} training files" if s.scenario == "instances"
                else f"class(es) {', '.join(self.forget)}: {int(s.forget.sum())} training images")
        return (f"data {d.name}: {len(d.train_y)} train / {len(d.test_y)} test images of "
                f"{d.image_shape[1]}x{d.image_shape[2]} px, {d.num_classes} classes; forget {what}; "
                f"θ_o {self.info['source']} (fingerprint {self.info['fingerprint']}).")

    # ------------------------------------------------------------------ forget vector, Retrain
    def solve(self, progress: bool = True) -> ForgetVector:
        """The forget vector of the forget set (fvlib.solve, with a progress bar)."""
        with _timed(self.timings, "solve δ"):
            fv = solve(self.model, self.data, self.split, self.fv_config, progress)
        fv.meta.update(forget_request=list(self.forget), theta_o=self.info["fingerprint"])
        return fv

    def retrain(self, progress: bool = True) -> tuple[ModelAdapter, float]:
        """Retrain: θ_o's architecture and recipe trained on the retain set (cached) and its seconds."""
        if self.arch is None:
            raise ValueError("Retrain needs θ_o's architecture and training recipe, which fvlib knows "
                             "only for a model it trained (MODEL='train:<arch>'); skip Retrain for "
                             "your own model")
        with _timed(self.timings, "Retrain"):
            model, info = train.train_cached(self.arch, self.data, self.split.retain, self.recipe, progress)
        return ModelAdapter(model, cam_layer=self.model.cam_layer, source="Retrain"), info["seconds"]

    # ------------------------------------------------------------------ measurements
    def evaluate(self, systems: dict[str, nn.Module], seconds: dict[str, float] | None = None
                 ) -> pd.DataFrame:
        """UA, RA, TA, MIA-Efficacy (%) of each system on the forget set, and its seconds."""
        rows = {}
        with _timed(self.timings, "metrics"):
            for name, system in systems.items():
                m = metrics.evaluate(system, self.data, self.split)
                rows[name] = {k: 100 * m[k] for k in metrics.METRICS}
                rows[name]["seconds"] = (seconds or {}).get(name, float("nan"))
        frame = pd.DataFrame.from_dict(rows, orient="index")[["UA", "RA", "TA", "MIA", "seconds"]]
        frame.index.name = "system"
        return frame

    def metrics_for_card(self, fv: ForgetVector) -> dict:
        """UA, RA, TA, MIA (%) of θ_o and of θ_o behind δ, as a model card records them."""
        table = self.evaluate({"θ_o": self.model, "FV": fv.wrap(self.model)})
        return {"unit": "%", "systems": table.drop(columns="seconds").to_dict(orient="index")}

    def gradcam(self, systems: dict[str, nn.Module], n: int = 3, seed: int = 0
                ) -> tuple[Figure, dict] | None:
        """Grad-CAM panel: n forget and n retain training images (rows) under each system (columns);
        None (with one printed line saying why) when the model has no layer Grad-CAM can hook."""
        d, s = self.data, self.split
        try:
            adapter.cam_layer(self.model)
        except adapter.CamUnavailable as err:
            print(f"Grad-CAM panel skipped: {err}")
            return None
        with _timed(self.timings, "Grad-CAM"):
            idx = torch.cat([cam.pick_images(d, s.forget, n, seed, system=self.model),
                             cam.pick_images(d, s.retain, n, seed, spread_classes=True,
                                             system=self.model)]).to(d.device)
            fig, numbers = cam.panel(d.train_x[idx], systems, adapter.cam_layer, d.train_y[idx], d.classes)
        numbers.update(train_indices=idx.tolist(), rows=["forget"] * n + ["retain"] * n)
        return fig, numbers

    # ------------------------------------------------------------------ export, outputs
    def export(self, fv: ForgetVector, out: str | Path | None = None,
               metrics: pd.DataFrame | dict | None = None, **options) -> dict[str, dict]:
        """fv.wrap(θ_o) as ONNX and .pt2 (δ baked in / δ as an input), checked, with model cards,
        in out (default data/exports/<name>/); metrics: an evaluate() table (%) or a dict for the
        cards; options go to fvlib.export.export."""
        out = Path(out) if out else data_dir() / "exports" / self.name
        if isinstance(metrics, pd.DataFrame):
            metrics = {"unit": "%", "systems": metrics.to_dict(orient="index")}
        info = {"theta_o": {k: v for k, v in self.info.items() if k != "fingerprint"},
                "forget": self.forget_card(), "metrics": metrics}
        with _timed(self.timings, "export + checks"):
            return export.export(fv.wrap(self.model), self.data, out, info, **options)

    def forget_card(self) -> dict:
        """The forget set for a model card: the request, classes, size, hash (and files if any)."""
        s, d = self.split, self.data
        card = {"request": list(self.forget), "scenario": s.scenario, "classes": list(s.classes),
                "class_names": [d.classes[c] for c in s.classes], "images": int(s.forget.sum()),
                "hash": s.hash}
        if s.scenario == "instances" and d.train_files is not None:
            card["files"] = [d.train_files[i] for i in s.forget.nonzero().flatten().tolist()]
        return card

    def save(self, fig: Figure, name: str, numbers: dict) -> dict[str, Path]:
        """figures/<name>/<figure>.{png,pdf,json} with provenance."""
        return figures.save(fig, name, self.name, numbers, self.provenance())

    def save_table(self, frame: pd.DataFrame, name: str, numbers: dict | None = None) -> dict[str, Path]:
        """figures/<name>/<table>.{csv,md,tex,json} with provenance."""
        return figures.save_table(frame, name, self.name, numbers, self.provenance())

    def _provenance(self) -> dict:
        return {"dataset": self.data.name, "data_fingerprint": self.data.fingerprint,
                "theta_o": self.info, "forget": list(self.forget), "timings": dict(self.timings)}

    def timing_table(self) -> pd.DataFrame:
        """Wall seconds of each part run so far (setup, solve, metrics, ...)."""
        return pd.DataFrame({"seconds": self.timings}).rename_axis("part")

    def provenance(self) -> dict:
        """Provenance of this run's figures and tables: code, device, data, θ_o, the FV config."""
        return provenance(self.data.device, config=self.fv_config, **self._provenance())


# ----------------------------------------------------------------------------- setup

def setup(model: ModelSource = CI_MODEL, data_root: str = "", forget: str | Sequence[str] | None = None,
          *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          model_size: Sequence[int] | int | None = None, cam_layer: str | None = None,
          image_size: int | None = None, augment: str | None = None, train_subset: int = 0,
          test_subset: int = 0, epochs: int | None = None, fv_epochs: int | None = None,
          name: str = "", seed: int = 0, ci: bool | None = None, progress: bool = True) -> OwnModel:
    """Data, forget set and θ_o (loaded or trained here), checked; see the module docstring.

    mean/std: θ_o's input normalisation (a model trained here: the data's, default computed from
    the training images). model_size: θ_o's input side(s) when unlike the images'. augment: the
    folder's training view (fvlib.augment name; used by a model trained here, Retrain and the δ
    solve; default by image size). *_subset: a seeded random subset of the images (0: all).
    epochs: θ_o's epochs when trained here.
    """
    ci = bool(os.environ.get("CI")) if ci is None else ci
    if ci:
        print(f"CI: the embedded digits and {CI_MODEL} (trained here in seconds) replace "
              f"MODEL={str(model)!r}, DATA_ROOT={data_root!r}; FORGET: the digit classes it names, else '0'")
        model, data_root, train_subset, test_subset, epochs, fv_epochs = CI_MODEL, "", 0, 0, None, 5
        image_size, mean, std, model_size, augment, cam_layer = None, None, None, None, None, None
    seed_everything(seed)
    figures.style()
    timings: dict[str, float] = {}
    trained_here = isinstance(model, str) and model.startswith(TRAIN_PREFIX)
    with _timed(timings, "load data"):
        data = _data(data_root, image_size, augment, train_subset, test_subset, seed,
                     (mean, std) if trained_here else (None, None))
    request = _request(forget, data, ci)
    split = splits.forget_set(data, request)
    with _timed(timings, "θ_o (load or train)"):
        net, info, arch, recipe = _theta_o(model, data, epochs, cam_layer, progress)
    if not trained_here:
        net = ModelAdapter(net, mean, std, _size(model_size) or adapter.input_size(net, data.image_shape),
                           cam_layer, info["source"])
        adapter.check(net, data)
        with _timed(timings, "θ_o accuracy"):
            info.update(_accuracy(net, data))
    info["fingerprint"] = models.fingerprint(net)
    fv_cfg = FV_FILES if split.scenario == "instances" else FV_CLASSES
    fv_cfg = dataclasses.replace(fv_cfg, epochs=fv_epochs) if fv_epochs else fv_cfg
    name = name or ("smoke" if data.name == "digits" else "your_model")
    return OwnModel(name, data, net, split, request, info, fv_cfg, arch, recipe, timings)


def _data(root: str, image_size: int | None, augment: str | None, n_train: int, n_test: int,
          seed: int, norm: tuple) -> ImageData:
    """The digits ('' root) or an image folder/archive, optionally a seeded subset."""
    data = (load("digits") if not root else
            load_folder(root, image_size, mean=norm[0], std=norm[1], augment=augment))
    if n_train or n_test:
        data = data.subset(n_train or len(data.train_y), n_test or len(data.test_y), seed)
    return data


def _request(forget, data: ImageData, ci: bool) -> list[str]:
    """The forget request as a list; under CI a request the digits cannot serve becomes class '0'."""
    items = [forget] if isinstance(forget, str) else list(forget or [])
    if ci and not all(i in data.classes for i in items):
        return ["0"]
    return items or [data.classes[0]]


def _theta_o(model: ModelSource, data: ImageData, epochs: int | None, cam_layer: str | None,
             progress: bool) -> tuple[nn.Module, dict, str | None, TrainConfig | None]:
    """(model, info, arch, recipe): trained here for 'train:<arch>', else loaded (adapter.load)."""
    if not (isinstance(model, str) and model.startswith(TRAIN_PREFIX)):
        net, source = adapter.load(model, data.num_classes)
        return net, {"source": source}, None, None
    arch = model[len(TRAIN_PREFIX):]
    if arch not in models.MODELS:
        raise ValueError(f"unknown fvlib architecture {arch!r} in MODEL={model!r}; valid: "
                         f"{', '.join(models.MODELS)}")
    recipe = dataclasses.replace(RECIPE, epochs=epochs) if epochs else RECIPE
    net, tinfo = train.train_original(arch, data, recipe, progress)
    last = tinfo["log"][-1]
    info = {"source": f"{arch} trained here ({recipe.epochs} epochs)", "arch": arch,
            "train_acc": last["train_acc"], "test_acc": last["test_acc"],
            "train_seconds": tinfo["seconds"], "train_cache_hit": tinfo["cache_hit"]}
    layer = cam_layer or _module_path(net, models.CAM_LAYERS[arch](net))
    return ModelAdapter(net, cam_layer=layer, source=info["source"]), info, arch, recipe


def _accuracy(model: nn.Module, data: ImageData) -> dict:
    return {"train_acc": metrics.accuracy(model, data.train_x, data.train_y),
            "test_acc": metrics.accuracy(model, data.test_x, data.test_y)}


def _module_path(root: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in root.named_modules() if m is module)


def _size(size: Sequence[int] | int | None) -> tuple[int, int] | None:
    if not size:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[-1]))


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the block's wall seconds to timings[key]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
