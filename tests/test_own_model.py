"""Your own model and image folder: folder loading with a computed spec, forget sets by name or
file, the adapter (normalisation and size inside), every model source, and each bad input."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from fvlib import adapter, cam, data, own_model, splits
from fvlib.adapter import ModelAdapter, ModelError


@pytest.fixture(scope="module")
def folder_data(image_folder):
    return data.load_folder(image_folder)


# ----------------------------------------------------------------------------- data and spec

def test_registered_specs_keep_their_training_views(digits):
    assert {n: s.augment for n, s in data.DATASETS.items()} == {
        "digits": "translate", "cifar10": "crop_flip", "imagenet10": "resized_crop_flip"}
    assert digits.spec is data.DATASETS["digits"]


def test_folder_spec_is_computed_from_the_training_images(folder_data):
    x = folder_data.train_x.float() / 255
    mean = x.mean((0, 1, 2))
    assert folder_data.spec.mean == pytest.approx(mean.tolist(), abs=1e-4)
    assert folder_data.spec.std == pytest.approx(x.std((0, 1, 2), unbiased=False).tolist(), abs=1e-4)
    assert folder_data.spec.augment == "crop_flip" and folder_data.name == "shapes"
    assert folder_data.classes == ["airplane", "bird", "cat"] and folder_data.image_shape == (3, 32, 32)
    assert folder_data.train_files[0] == "train/airplane/0000.png" and len(folder_data.train_files) == 12


def test_given_normalisation_changes_the_identity(image_folder, folder_data):
    other = data.load_folder(image_folder, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert other.spec.mean == (0.5, 0.5, 0.5) and other.fingerprint != folder_data.fingerprint
    assert torch.equal(other.train_x, folder_data.train_x)


def test_subset_keeps_file_names_aligned(folder_data):
    sub = folder_data.subset(5, 3, seed=1)
    for i, f in enumerate(sub.train_files):
        assert f.split("/")[1] == sub.classes[int(sub.train_y[i])]


# ----------------------------------------------------------------------------- forget sets

def test_forget_one_class_several_classes_or_files(folder_data):
    one = splits.forget_set(folder_data, "bird")
    assert one.scenario == "classwise" and int(one.forget.sum()) == 4 and one.classes == (1,)
    two = splits.forget_set(folder_data, ["bird", "cat"])
    assert two.classes == (1, 2) and int(two.forget.sum()) == 8 and int(two.test_eval.sum()) == 2
    files = splits.forget_set(folder_data, ["train/cat/0001.png", "/any/prefix/train/bird/0003.png"])
    assert files.scenario == "instances" and files.forget.nonzero().flatten().tolist() == [7, 9]
    assert bool(files.test_eval.all())


def test_unknown_forget_class_lists_the_classes(folder_data):
    with pytest.raises(splits.SplitError, match=r"forget class 'dog' is not in shapes; its classes "
                                                r"are: airplane, bird, cat"):
        splits.forget_set(folder_data, ["dog"])


def test_forget_file_outside_the_training_set(folder_data):
    with pytest.raises(splits.SplitError, match=r"forget file 'test/cat/0000.png' is not in the "
                                                r"training set .*e\.g\. train/airplane/0000.png"):
        splits.forget_set(folder_data, ["test/cat/0000.png"])
    with pytest.raises(splits.SplitError, match="mixes class names"):
        splits.forget_set(folder_data, ["bird", "train/cat/0001.png"])


# ----------------------------------------------------------------------------- the adapter

def test_adapter_puts_size_and_normalisation_inside(tiny_net):
    net = tiny_net()
    wrapped = ModelAdapter(net, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), input_size=(24, 24))
    x = torch.rand(2, 3, 32, 32)
    inner = nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), net((inner - mean) / std), atol=1e-6)


def _save_pt2(net: nn.Module, path, batch_dynamic: bool = True):
    x = torch.rand(2, 3, 32, 32)
    dyn = {"x": {0: torch.export.Dim("batch")}} if batch_dynamic else None
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=dyn), str(path))
    return path


def _save_torchscript(net: nn.Module, path):
    with warnings.catch_warnings():  # torch.jit is deprecated in current torch
        warnings.simplefilter("ignore")
        torch.jit.trace(net, torch.rand(2, 3, 32, 32)).save(str(path))
    return path


@pytest.mark.parametrize("kind", ["pt2", "torchscript", "torchvision"])
def test_model_files_load_and_match_the_model(tmp_path, tiny_net, folder_data, kind):
    import torchvision
    if kind == "torchvision":
        net = torchvision.models.get_model("resnet18", num_classes=3).eval()
        torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pth")
        source = f"resnet18:{tmp_path / 'w.pth'}"
    else:
        net = tiny_net()
        source = (_save_pt2 if kind == "pt2" else _save_torchscript)(net, tmp_path / f"m.{kind}")
    loaded, description = adapter.load(source, num_classes=3)
    wrapped = ModelAdapter(loaded)
    assert adapter.check(wrapped, folder_data) == 3 and description.startswith(kind)
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(wrapped.eval()(x), net(x), atol=1e-5)


def test_gradcam_hooks_a_pt2_program_like_the_module(tmp_path, tiny_net):
    net = tiny_net()
    program = ModelAdapter(adapter.load(_save_pt2(net, tmp_path / "m.pt2"))[0])
    module = ModelAdapter(net)
    x = torch.rand(4, 3, 32, 32)
    maps_p = cam.gradcam(program, x, adapter.cam_layer, targets=0)
    maps_m = cam.gradcam(module, x, adapter.cam_layer, targets=0)
    assert adapter.cam_layer(module) is net.conv
    assert maps_m.abs().sum() > 0 and torch.allclose(maps_p, maps_m, atol=1e-4)


def test_torchscript_has_no_layer_to_hook(tmp_path, tiny_net):
    ts = ModelAdapter(adapter.load(_save_torchscript(tiny_net(), tmp_path / "m.ts"))[0])
    with pytest.raises(adapter.CamUnavailable, match="TorchScript .*Python hooks do not fire.*\\.pt2"):
        adapter.cam_layer(ts)


# ----------------------------------------------------------------------------- bad models

class _Gray(nn.Module):
    def forward(self, x):  # a one-channel model
        return nn.functional.conv2d(x, torch.zeros(3, 1, 3, 3)).mean((2, 3))


class _Maps(nn.Module):
    def forward(self, x):  # returns (B, C, H, W) maps, not logits
        return x


@pytest.mark.parametrize("net, message", [
    (_Gray(), r"fails on a batch of shape \(2, 3, 32, 32\).*float32 \(B, 3, 32, 32\) RGB in \[0, 1\]"),
    (_Maps(), r"must return \(B, C\) logits, got \(2, 3, 32, 32\)"),
])
def test_model_with_the_wrong_input_or_output(folder_data, net, message):
    with pytest.raises(ModelError, match=message):
        adapter.check(ModelAdapter(net), folder_data)


def test_class_count_must_match_the_folder(folder_data, tiny_net):
    with pytest.raises(ModelError, match=r"returns 5 class scores but shapes has 3 classes"):
        adapter.check(ModelAdapter(tiny_net(classes=5)), folder_data)


def test_static_batch_program_says_how_to_re_export(tmp_path, tiny_net, folder_data):
    torch.export.save(torch.export.export(tiny_net(), (torch.rand(1, 3, 32, 32),)), str(tmp_path / "b1.pt2"))
    with pytest.raises(ModelError, match=r"exported for batch size 1 only.*Dim\('batch'\)"):
        adapter.check(ModelAdapter(adapter.load(tmp_path / "b1.pt2")[0]), folder_data)


def test_file_that_is_no_program_nor_torchscript(tmp_path, tiny_net):
    (tmp_path / "notes.pt2").write_text("not a model")
    with pytest.raises(ModelError, match=r"neither a torch.export program \(.pt2\) nor a TorchScript "
                                         r"file: it is not a zip archive"):
        adapter.load(tmp_path / "notes.pt2")
    torch.save(tiny_net().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelError, match=r"it is a torch.save checkpoint.*'resnet18:weights.pth'"):
        adapter.load(tmp_path / "weights.pt")


def test_state_dict_that_does_not_fit_the_architecture(tmp_path, tiny_net):
    torch.save(tiny_net().state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ModelError, match=r"does not fit torchvision.s resnet18: missing bn1.bias.*"
                                         r"unexpected bn.bias"):
        adapter.load(f"resnet18:{tmp_path / 'tiny.pth'}", num_classes=3)


def test_head_of_another_class_count_is_named(tmp_path):
    import torchvision
    torch.save(torchvision.models.get_model("resnet18", num_classes=10).state_dict(), tmp_path / "r.pth")
    with pytest.raises(ModelError, match=r"shape mismatch fc.weight: file \(10, 512\) vs resnet18 \(3, 512\)"):
        adapter.load(f"resnet18:{tmp_path / 'r.pth'}", num_classes=3)


# ----------------------------------------------------------------------------- setup

def test_setup_with_a_pt2_model_and_files_to_forget(tmp_path, tiny_net, image_folder):
    path = _save_pt2(tiny_net(), tmp_path / "m.pt2")
    own = own_model.setup(str(path), str(image_folder), ["train/cat/0001.png", "train/cat/0002.png"],
                          mean=(0.3, 0.3, 0.3), std=(0.3, 0.3, 0.3), ci=False, progress=False)
    assert own.split.scenario == "instances" and int(own.split.forget.sum()) == 2
    assert own.fv_config.beta == 1.0 and own.arch is None and own.name == "your_model"
    assert 0 <= own.info["train_acc"] <= 1 and own.forget_card()["files"] == [
        "train/cat/0001.png", "train/cat/0002.png"]
    with pytest.raises(ValueError, match="Retrain needs θ_o's architecture"):
        own.retrain()


def test_setup_under_ci_swaps_in_the_digits(image_folder, trained):  # trained: θ_o in the cache
    own = own_model.setup("resnet50:nowhere.pth", str(image_folder), ["cat"], ci=True, progress=False)
    assert own.data.name == "digits" and own.forget == ["0"] and own.arch == "small_cnn"
    assert own.info["train_acc"] > 0.9 and own.name == "smoke"
    # its tables and figures carry one provenance: code, device, data, θ_o, the config, the forget set
    paths = own.save_table(own.timing_table(), "your_model_timings", {"n": 1})
    card = json.loads(paths["json"].read_text())
    prov = card["provenance"]
    assert card["numbers"] == {"n": 1} and prov["git_sha"] and prov["device"].startswith("cpu")
    assert prov["data_fingerprint"] == own.data.fingerprint and prov["forget"] == ["0"]
    assert prov["theta_o"]["train_acc"] == own.info["train_acc"] and "config" in prov
