"""Shared fixtures: an isolated cache/figures folder per session and the embedded digits data."""
from __future__ import annotations

import os

import pytest
import torch

from fvlib.runtime import environment

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def isolated_outputs(tmp_path_factory):
    """Point fvlib's cache and figures at temp folders so tests never touch the repo's data/."""
    root = tmp_path_factory.mktemp("fvlib")
    with environment(FVLIB_CACHE=str(root / "cache"), FVLIB_FIGURES=str(root / "figures")):
        yield root


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset on the CPU."""
    from fvlib import data
    return data.load("digits")


@pytest.fixture(scope="session")
def trained(digits):
    """(θ_o, info): a small CNN trained on all digits with the smoke recipe (cached for the session)."""
    from fvlib import config, train
    return train.train_original("small_cnn", digits, config.get_profile("smoke").train, progress=False)


@pytest.fixture(scope="session")
def original(trained):
    """θ_o of the smoke profile."""
    return trained[0]


@pytest.fixture(scope="session")
def experiment(digits, trained):
    """The smoke profile's Experiment (profile, digits, θ_o) with 2 trials."""
    from fvlib import config
    from fvlib.experiment import Experiment
    return Experiment(config.get_profile("smoke").replace(trials=2), digits, *trained)


@pytest.fixture(scope="session")
def short_experiment(digits, trained):
    """Smoke profile with one trial, Retrain and forget vectors shortened to 3 epochs: fast study
    tests (shift study, transfer, white-box) that share these systems through the session cache."""
    import dataclasses
    from fvlib import config
    from fvlib.experiment import Experiment
    base = config.get_profile("smoke")
    from fvlib.baselines.retrain import RetrainConfig
    retrain = RetrainConfig(base.model, dataclasses.replace(base.train, epochs=3))
    short = base.replace(baselines={**base.baselines, "retrain": retrain}, trials=1,
                         fv=dataclasses.replace(base.fv, epochs=3),
                         fv_random=dataclasses.replace(base.fv_random, epochs=3))
    return Experiment(short, digits, *trained)


class TinyNet(torch.nn.Module):
    """conv -> BN -> ReLU -> pool -> linear: the smallest classifier with BatchNorm (export tests)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.fixture
def tiny_net():
    """Factory of seeded TinyNets in eval mode with non-trivial BN running statistics."""
    def make(classes: int = 3, seed: int = 0) -> TinyNet:
        torch.manual_seed(seed)
        net = TinyNet(classes)
        net.bn.running_mean.uniform_(-0.1, 0.1)
        net.bn.running_var.uniform_(0.5, 1.5)
        return net.eval()
    return make


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, digits):
    """train/<class>/*.png (4 per class) and test/<class>/*.png (2 per class), 3 classes, 32 px."""
    from PIL import Image
    root = tmp_path_factory.mktemp("folder") / "shapes"
    k = 0
    for split, n in (("train", 4), ("test", 2)):
        for c in ("airplane", "bird", "cat"):
            (root / split / c).mkdir(parents=True)
            for j in range(n):
                Image.fromarray(digits.train_x[k].numpy()).save(root / split / c / f"{j:04d}.png")
                k += 1
    return root
