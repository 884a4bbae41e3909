"""Export of the unlearned system: ONNX and .pt2, δ baked in or as an input, checked against eager
PyTorch, carded, atomic; θ_o untouched; an operator ONNX cannot express; the command line."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fvlib import data, export
from fvlib.adapter import ModelAdapter
from fvlib.data import to_float
from fvlib.forget_vector import ForgetVector


@torch.library.custom_op("fvlib_test::wiggle", mutates_args=())
def wiggle(x: torch.Tensor) -> torch.Tensor:
    """A custom operator (identity) that torch.export keeps and ONNX has no translation for."""
    return x.clone()


@wiggle.register_fake
def _(x):
    return torch.empty_like(x)


class Wiggled(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(wiggle(x))


@pytest.fixture(scope="module")
def folder_data(image_folder):
    return data.load_folder(image_folder)


def _vector(seed: int = 0) -> ForgetVector:
    return ForgetVector(torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 0.1)


def _modes(model):
    return [m.training for m in model.modules()]


def test_both_forms_of_both_formats_match_eager_and_are_carded(tmp_path, tiny_net, folder_data):
    net, fv = ModelAdapter(tiny_net()), _vector()
    cards = export.export(fv.wrap(net), folder_data, tmp_path / "out", {"forget": {"request": ["cat"]}})
    names = {"unlearned.pt2", "unlearned_delta_input.pt2", "unlearned.onnx", "unlearned_delta_input.onnx"}
    assert set(cards) == names
    assert {p.name for p in (tmp_path / "out").iterdir()} == names | {f"{n}.json" for n in names} | {
        "forget_vector.safetensors"}
    for name, card in cards.items():
        assert card["check"]["passed"] and card["check"]["images"] == 6
        assert card["check"]["max_abs_logit_diff"] <= 1e-5 and card["check"]["prediction_mismatches"] == 0
        on_disk = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert on_disk["sha256"] == card["sha256"] and on_disk["forget"] == {"request": ["cat"]}
        assert on_disk["delta"]["l2"] == pytest.approx(fv.norm, rel=1e-6)
        assert on_disk["theta_o"]["fingerprint"] and on_disk["fvlib"] and "git_sha" in on_disk
    assert cards["unlearned.onnx"]["opset"] >= 17


def test_delta_input_graph_forgets_whatever_it_is_fed(tmp_path, tiny_net, folder_data):
    net = ModelAdapter(tiny_net())
    export.export(_vector(0).wrap(net), folder_data, tmp_path / "out", formats=("onnx",),
                  forms=("delta_input",))
    session = ort.InferenceSession(str(tmp_path / "out" / "unlearned_delta_input.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = to_float(folder_data.test_x)
    for delta in (torch.zeros(3, 32, 32), _vector(1).delta + _vector(2).delta):  # θ_o; a sum of vectors
        got = session.run(["logits"], {"x": x.numpy(), "delta": delta.numpy()})[0]
        with torch.no_grad():
            want = ForgetVector(delta).wrap(net).eval()(x).numpy()
        assert np.abs(got - want).max() <= 1e-5


def test_export_leaves_theta_o_untouched(tmp_path, tiny_net, folder_data, monkeypatch):
    """The trap: an exporter that restores the wrapper's mode (train, for a fresh fv.wrap) would put
    θ_o's BatchNorm in train mode, and θ_o's next forward would change its running statistics."""
    write_pt2 = export.write_pt2

    def restores_train_mode(module, *args):  # as the TorchScript-based ONNX exporter does
        write_pt2(module, *args)
        module.train(True)
    monkeypatch.setattr(export, "write_pt2", restores_train_mode)
    theta_o = tiny_net()
    system = _vector().wrap(theta_o)
    assert system.training and not any(_modes(theta_o))  # fv.wrap makes a module in train mode
    before = {k: v.clone() for k, v in theta_o.state_dict().items()}
    export.export(system, folder_data, tmp_path / "out", formats=("pt2",))
    assert not any(_modes(theta_o)) and system.training
    with torch.no_grad():
        theta_o(torch.rand(8, 3, 32, 32))  # deployed as it was: running statistics stay
    assert all(torch.equal(before[k], v) for k, v in theta_o.state_dict().items())
    assert all(p.requires_grad for p in theta_o.parameters())


def test_operator_onnx_cannot_express_is_named_and_nothing_is_written(tmp_path, tiny_net, folder_data):
    system = _vector().wrap(Wiggled(tiny_net()))
    out = tmp_path / "out"
    export.export(system, folder_data, out, formats=("pt2",), forms=("baked",))  # .pt2 works
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(export.UnsupportedOperator, match=r"ONNX cannot express operator "
                                                         r"fvlib_test::wiggle.*\.pt2 export still works"):
        export.export(system, folder_data, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first  # the old export, whole
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no half-written stage left behind


def test_a_failed_check_writes_nothing(tmp_path, tiny_net, folder_data):
    with pytest.raises(export.ExportError, match="differs from eager PyTorch.*nothing was written"):
        export.export(_vector().wrap(tiny_net()), folder_data, tmp_path / "out", formats=("onnx",),
                      forms=("baked",), tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests(tiny_net, folder_data, tmp_path):
    with pytest.raises(export.ExportError, match=r"takes the unlearned system fv.wrap"):
        export.export(tiny_net(), folder_data, tmp_path / "o")
    with pytest.raises(export.ExportError, match="opset 16 is too old"):
        export.export(_vector().wrap(tiny_net()), folder_data, tmp_path / "o", opset=16)


def test_command_line(tmp_path, tiny_net, image_folder, capsys):
    with pytest.raises(SystemExit) as done:
        export.main(["--help"])
    assert done.value.code == 0 and "--vector" in capsys.readouterr().out
    model = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(tiny_net(), (torch.rand(2, 3, 32, 32),),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), str(model))
    fv = _vector()
    fv.meta["forget_request"] = ["bird"]
    fv.save(tmp_path / "fv.safetensors")
    args = ["--model", str(model), "--data", str(image_folder), "--vector", str(tmp_path / "fv.safetensors"),
            "--out", str(tmp_path / "out"), "--format", "pt2"]
    assert export.main(args) == 0
    card = json.loads((tmp_path / "out" / "unlearned.pt2.json").read_text())
    assert card["forget"]["class_names"] == ["bird"] and set(card["metrics"]["systems"]) == {"θ_o", "FV"}
    assert export.main(args[:-2] + ["--format", "pt2", "--opset", "12"]) == 1
    assert "opset 12 is too old" in capsys.readouterr().err
