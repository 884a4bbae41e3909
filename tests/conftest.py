"""Shared fixtures: an isolated cache/figures folder per session and the embedded digits data."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def isolated_outputs(tmp_path_factory):
    """Point fvlib's cache and figures at temp folders so tests never touch the repo's data/."""
    root = tmp_path_factory.mktemp("fvlib")
    old = {k: os.environ.get(k) for k in ("FVLIB_CACHE", "FVLIB_FIGURES")}
    os.environ["FVLIB_CACHE"] = str(root / "cache")
    os.environ["FVLIB_FIGURES"] = str(root / "figures")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset on the CPU."""
    from fvlib import data
    return data.load("digits")


@pytest.fixture(scope="session")
def original(digits):
    """A small CNN trained on all digits with the smoke recipe (cached for the session)."""
    from fvlib import config, train
    model, info = train.train_original("small_cnn", digits, config.get_profile("smoke").train,
                                       progress=False)
    return model
