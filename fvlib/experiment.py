"""One setup call: profile, data on its device, θ_o (cached), an executor for the record store, and
a saver bound to them, so figures, tables and records all carry the same provenance (incl. θ_o's
fit). `notebook` is that call as every notebook makes it (CI swap, figure style, then `setup`)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from torch import nn

from fvlib import config, figures, models, splits, train
from fvlib.data import ImageData
from fvlib.paths import resolve_data_root
from fvlib.provenance import provenance
from fvlib.runtime import seed_everything

CI_PROFILE = "smoke"  # what every notebook runs when the environment variable CI is set


@dataclasses.dataclass(frozen=True)
class Development:
    """The development split (docs/protocol.md E1): a seeded share of the training images becomes
    its test set, sized per dataset (10 % = CIFAR-10's 5,000, Imagenette's 947)."""
    fraction: float = 0.1             # share of the training images held out
    seed: int = 0                     # which images


@dataclasses.dataclass
class Experiment:
    """A profile, its data, θ_o and θ_o's training info; the context of every study and figure."""
    profile: config.Profile
    data: ImageData
    original: nn.Module
    info: dict  # θ_o: log (per epoch, last row with train_acc / test_acc), seconds, cache_hit
    development: bool = False  # data is the development split (held-out training images as test set)
    executor: Any = None       # runs the record store's units (None: records.Serial, in this process)
    identity: tuple = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # hashed once: every record and vector key starts with (data, θ_o, architecture)
        self.identity = (self.data.fingerprint, models.fingerprint(self.original), self.profile.model)

    @property
    def name(self) -> str:
        return self.profile.name

    def original_info(self) -> dict:
        """θ_o's fingerprint, architecture, train / test accuracy, recipe and training seconds."""
        last = (self.info.get("log") or [{}])[-1]
        return {"fingerprint": self.identity[1], "arch": self.profile.model,
                "train_acc": last.get("train_acc"), "test_acc": last.get("test_acc"),
                "train_seconds": self.info.get("seconds"), "recipe": self.profile.train,
                "development": self.development}

    def trials(self, n: int | None = None) -> list[int]:
        """Trial ids 0..n-1 (n = 0 or None: the profile's number of trials)."""
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ValueError(f"a number of trials is an int >= 0 (0: the profile's {self.profile.trials}), "
                             f"got {n!r}")
        return list(range(n or self.profile.trials))

    def splits(self, scenario: str, trials: Sequence[int] | None = None) -> list[splits.Split]:
        """The split of each trial (class-wise: class i; random: seed i)."""
        ids = self.trials() if trials is None else list(trials)
        return [splits.for_trial(self.data, scenario, t, self.profile.percent) for t in ids]

    def provenance(self, **extra: Any) -> dict:
        """Provenance of anything this experiment produces (records, figures, tables): code, device,
        profile, data, θ_o's fit, plus extra (e.g. settings, seconds)."""
        return provenance(self.data.device, profile=self.profile.name, profile_config=self.profile,
                          dataset=self.data.name, data_fingerprint=self.data.fingerprint,
                          development=self.development, theta_o=self.original_info(), **extra)

    def save(self, fig: Figure, name: str, numbers: Any, *, settings: Any = None,
             seconds: float | None = None) -> dict[str, Path]:
        """figures/<profile>/<name>.{png,pdf,json}: the figure, its numbers and provenance."""
        return figures.save(fig, name, self.name, numbers, self.provenance(settings=settings, seconds=seconds))

    def save_table(self, frame, name: str, *, numbers: Any = None, settings: Any = None,
                   latex: bool = True) -> dict[str, Path]:
        """figures/<profile>/<name>.{csv,md,tex,json}: the table, its numbers and provenance."""
        return figures.save_table(frame, name, self.name, numbers, self.provenance(settings=settings), latex)


def setup(profile: str | config.Profile = "smoke", data_root: str | None = None, *, development: bool = False,
          trials: int | None = None, sizes: dict | None = None, executor: Any = None, progress: bool = True,
          **overrides: Any) -> Experiment:
    """Profile (by name or object) + its data + θ_o (trained once, then from the cache).

    trials: the profile's number of trials (None/0: its own). sizes: study-size overrides merged
    into the profile's, e.g. {"selection": {"trials": 3}}. executor: runs the record store's units:
    "serial", "ray" (a local Ray instance), "ray:auto", "ray:HOST:PORT" or an executor object
    (fvlib.executor); None: the environment variable FVLIB_EXECUTOR (how `python -m fvlib.run --ray`
    reaches the notebooks), else in this process. development=True: the development split instead
    (a share of the training images is its test set, the real test set is dropped) with its own θ_o,
    for choices that the final test-set numbers must not see.
    """
    if not isinstance(profile, (str, config.Profile)):
        raise TypeError(f"fvlib.setup needs a profile name ({', '.join(config.PROFILE_NAMES)}) or a "
                        f"config.Profile, got {type(profile).__name__} {profile!r}; e.g. fvlib.setup('smoke')")
    prof = config.get_profile(profile) if isinstance(profile, str) else profile
    from fvlib import executor as executors
    executor = executors.get(executor)  # a bad name fails before θ_o is trained
    root = resolve_data_root(data_root)
    if root is not None:
        overrides["data_root"] = root
    if trials:
        overrides["trials"] = trials
    if sizes:
        overrides["studies"] = {**prof.studies, **{k: {**prof.studies.get(k, {}), **v} for k, v in sizes.items()}}
    prof = prof.replace(**overrides) if overrides else prof
    if prof.data_root and prof.dataset == "digits":  # it would be ignored, yet recorded as used
        raise ValueError(f"profile {prof.name!r} uses the embedded digits data and takes no data root "
                         f"(got {prof.data_root}); drop it, or choose a CIFAR-10 / ImageNet-10 profile")
    data = config.load_data(prof)
    if development:
        dev = prof.sizes("development", Development)
        data = data.holdout(round(dev.fraction * len(data.train_y)), dev.seed)
    model, info = train.train_original(prof.model, data, prof.train, progress)
    return Experiment(prof, data, model, info, development, executor)


def notebook(profile: str, data_root: str = "", **kw: Any) -> Experiment:
    """The setup call of every notebook: under CI the smoke profile (said in the output, since CI
    runs every notebook on the embedded data), figure style, fixed global seeds, then `setup`."""
    if os.environ.get("CI") and profile != CI_PROFILE:
        print(f"CI is set: running profile {CI_PROFILE!r} (embedded digits) instead of {profile!r}")
        profile, data_root = CI_PROFILE, ""
    figures.style()
    seed_everything(0)  # every draw of fvlib has its own seeded generator; this pins stray global RNG use
    ex = setup(profile, data_root or None, **kw)
    th = ex.original_info()
    print(f"{ex.name}: {ex.data.name} / {ex.profile.model} on {ex.data.device}, {ex.profile.trials} trials; "
          f"θ_o train {100 * th['train_acc']:.2f} %, test {100 * th['test_acc']:.2f} %")
    return ex
