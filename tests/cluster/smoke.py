"""The smoke Table 1 the Ray tests run, kept small: a third of the digits (450 training, 150 test
images), θ_o trained for 6 epochs on them, Retrain and the forget vectors for 1; Retrain, GA and the
forget vector on two class-wise trials. Imported by the tests, and run as the driver process that
test_local.py kills mid-study (`python tests/cluster/smoke.py`, with FVLIB_CACHE and FVLIB_EXECUTOR
in its environment, as a notebook kernel would have them)."""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Iterator

METHODS = ("retrain", "ga", "fv")   # θ_o's cache (Retrain), a baseline, a batched forget-vector solve
TRIALS = (0, 1)
METRICS = ("UA", "RA", "TA", "MIA", "MIA_loss")


def profile():
    """The smoke profile, shortened."""
    from fvlib import config
    from fvlib.baselines.retrain import RetrainConfig
    base = config.get_profile("smoke")
    theta_o = dataclasses.replace(base.train, epochs=6)
    return base.replace(train=theta_o, trials=len(TRIALS), fv=dataclasses.replace(base.fv, epochs=1),
                        baselines={**base.baselines,
                                   "retrain": RetrainConfig(base.model, dataclasses.replace(theta_o, epochs=1))})


def experiment(executor=None):
    """The shortened experiment on the CPU, made as fvlib.setup makes one (θ_o from the cache after
    its first training; executor None: $FVLIB_EXECUTOR, else serial)."""
    from fvlib import data, train
    from fvlib import executor as executors
    from fvlib.experiment import Experiment
    prof, digits = profile(), data.load("digits").subset(450, 150)
    model, info = train.train_original(prof.model, digits, prof.train, progress=False)
    return Experiment(prof, digits, model, info, executor=executors.get(executor))


def table(ex, methods=METHODS):
    """The class-wise Table 1 records of methods × TRIALS (computing the missing ones)."""
    from fvlib import study
    return study.run_study(ex, "classwise", methods, TRIALS, progress=False)


def theta_o_file(ex) -> Path:
    """θ_o's file in the cache (a driver process started with a fresh cache is given a copy)."""
    import torch
    from fvlib import train
    return train.cache_file(ex.profile.model, ex.data, torch.ones(len(ex.data.train_y), dtype=torch.bool),
                            ex.profile.train)


@contextlib.contextmanager
def cache(folder: Path) -> Iterator[Path]:
    """FVLIB_CACHE=folder for the block."""
    from fvlib.runtime import environment
    with environment(FVLIB_CACHE=str(folder)):
        yield folder


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    table(experiment(), ("ga", "retrain"))
