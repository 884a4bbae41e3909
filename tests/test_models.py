"""The paper's architectures: output shapes at 32 and 112/224 px, registry errors, normalisation."""
from __future__ import annotations

import pytest
import torch

from fvlib import models

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.mark.parametrize("name,size", [("resnet18", 32), ("small_cnn", 32), ("resnet18", 112),
                                       ("vgg16_bn", 32), ("vgg16_bn", 112), ("vgg16_bn", 224),
                                       ("resnet18_imagenet", 224)])
def test_output_shape(name, size):
    m = models.build(name, 10, MEAN, STD).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, size, size)).shape == (2, 10)


def test_vgg_matches_protocol():
    m = models.build("vgg16_bn", 10, MEAN, STD)
    pools = sum(isinstance(l, torch.nn.MaxPool2d) for l in m.features)
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    assert pools == 4 and len(convs) == 13 and all(c.bias is None for c in convs)
    assert [l.out_features for l in m.classifier if isinstance(l, torch.nn.Linear)] == [256, 256, 10]
    assert not any(isinstance(l, torch.nn.Dropout) for l in m.modules())


def test_resnet_cifar_stem():
    m = models.build("resnet18", 10, MEAN, STD)
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1)
    assert not any(isinstance(l, torch.nn.MaxPool2d) for l in m.stem)


def test_normalisation_is_inside_and_saved():
    m = models.build("small_cnn", 10, MEAN, STD)
    assert "normalize.mean" in m.state_dict() and "normalize.std" in m.state_dict()
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(m.normalize(x), (x - 0.5) / 0.25)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="valid names: resnet18, resnet18_imagenet, vgg16_bn, small_cnn"):
        models.build("vit", 10, MEAN, STD)
