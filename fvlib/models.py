"""The paper's classifiers (docs/protocol.md P3) with normalisation inside the model.

Inputs are (B, 3, H, W) float pixels in [0, 1]; the first layer normalises with per-dataset
buffers, so forget vectors, shifts and Grad-CAM overlays all live in pixel space.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std with mean/std as buffers (saved with the weights, as in the authors' code)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """ResNet basic block; 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(cout, cout))
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, stride, k=1))
                         if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18; CIFAR stem (3x3/1, no max-pool) by default, ImageNet stem (7x7/2 + pool) optional."""

    def __init__(self, num_classes: int, mean, std, imagenet_stem: bool = False):
        super().__init__()
        stem = ([*_conv_bn(3, 64, 2, k=7), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
                if imagenet_stem else [*_conv_bn(3, 64), nn.ReLU(inplace=True)])
        layers, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1)))
            cin = width
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(*stem)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VGG16BN(nn.Module):
    """VGG-16-BN as in the authors' code (P3.2): 4 max-pools, 2x2 avg-pool, 2048-256-256-C head."""

    def __init__(self, num_classes: int, mean, std):
        super().__init__()
        layers, cin = [], 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [*_conv_bn(cin, v), nn.ReLU(inplace=True)]
                cin = v
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(inplace=True),
                                        nn.Linear(256, 256), nn.ReLU(inplace=True),
                                        nn.Linear(256, num_classes))
        _kaiming_init(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(self.normalize(x)))
        return self.classifier(torch.flatten(x, 1))


class SmallCNN(nn.Module):
    """A 4-conv CNN for the embedded digits data: trains to >90 % in seconds on a CPU."""

    def __init__(self, num_classes: int, mean, std, width: int = 16):
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            *_conv_bn(3, w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            *_conv_bn(4 * w, 4 * w), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(self.normalize(x))), 1))


def _kaiming_init(model: nn.Module, linear_std: float | None = None) -> None:
    """Kaiming-normal (fan_out) convs, BN 1/0; Linear N(0, linear_std) when given (VGG, P3.2)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "resnet18_imagenet": lambda num_classes, mean, std: ResNet18(num_classes, mean, std, True),
    "vgg16_bn": VGG16BN,
    "small_cnn": SmallCNN,
}

# Grad-CAM target layer per architecture: last block of the last stage / last conv block.
CAM_LAYERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "resnet18": lambda m: m.layer4[-1],
    "resnet18_imagenet": lambda m: m.layer4[-1],
    "vgg16_bn": lambda m: m.features[-1],
    "small_cnn": lambda m: m.features[-1],
}


def build(name: str, num_classes: int, mean, std) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, mean=mean, std=std)


def fingerprint(model: nn.Module) -> str:
    """Short sha256 of a model's parameters and buffers (identifies the frozen θ_o of a vector)."""
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for a block: modules found in train mode are switched back after."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield model
    finally:
        for m in training:
            m.training = True


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, parameters frozen; restores each module's mode and each parameter's flag and .grad.

    Used wherever gradients flow to the input only (δ solve, PGD, Grad-CAM): BN uses its running
    statistics and no parameter gradient is built.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag, grad in params:  # Grad-CAM calls zero_grad(), which drops .grad: put it back
            p.requires_grad_(flag)
            p.grad = grad
