"""One setup call for every notebook: profile, data on its device, θ_o (cached), and a saver bound
to them, so figures, tables and records all carry the same provenance (incl. θ_o's fit)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from torch import nn

from fvlib import config, figures, models, splits, systems, train
from fvlib.data import ImageData
from fvlib.provenance import provenance


@dataclasses.dataclass
class Experiment:
    """A profile, its data, θ_o and θ_o's training info; the context of every study and figure."""
    profile: config.Profile
    data: ImageData
    original: nn.Module
    info: dict  # θ_o: log (per epoch, last row with train_acc / test_acc), seconds, cache_hit
    development: bool = False  # data is the development split (held-out training images as test set)
    identity: tuple = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # hashed once: every record and vector key starts with (data, θ_o, architecture)
        self.identity = (self.data.fingerprint, models.fingerprint(self.original), self.profile.model)

    @property
    def name(self) -> str:
        return self.profile.name

    def theta_o(self) -> dict:
        """θ_o's fingerprint, architecture, train / test accuracy and training seconds."""
        last = (self.info.get("log") or [{}])[-1]
        return {"fingerprint": self.identity[1], "arch": self.profile.model,
                "train_acc": last.get("train_acc"), "test_acc": last.get("test_acc"),
                "train_seconds": self.info.get("seconds"), "recipe": self.profile.train,
                "development": self.development}

    def trials(self, n: int | None = None) -> list[int]:
        """Trial ids 0..n-1 (n = 0 or None: the profile's number of trials)."""
        return list(range(n or self.profile.trials))

    def splits(self, scenario: str, trials: Sequence[int] | None = None) -> list[splits.Split]:
        """The split of each trial (class-wise: class i; random: seed i)."""
        ids = self.trials() if trials is None else list(trials)
        return [splits.for_trial(self.data, scenario, t, self.profile.percent) for t in ids]

    def system(self, method: str, split: splits.Split) -> nn.Module:
        """The unlearned system of one method and split (from the cache when it exists)."""
        return systems.build(self, method, [split])[0].module

    def provenance(self, **extra: Any) -> dict:
        """Provenance of anything this experiment produces: code, device, profile, data, θ_o."""
        return provenance(None, self.data.device, profile=self.profile.name, dataset=self.data.name,
                          data_fingerprint=self.data.fingerprint, development=self.development,
                          theta_o=self.theta_o(), **extra)

    def save(self, fig: Figure, name: str, numbers: Any, settings: Any = None,
             seconds: float | None = None) -> dict[str, Path]:
        """figures/<profile>/<name>.{png,pdf,json}: the figure, its numbers and provenance."""
        return figures.save(fig, name, self.name, numbers, settings, self.data.device, seconds,
                            **self._extra())

    def save_table(self, frame, name: str, numbers: Any = None, settings: Any = None,
                   latex: bool = True) -> dict[str, Path]:
        """figures/<profile>/<name>.{csv,md,tex,json}: the table, its numbers and provenance."""
        return figures.save_table(frame, name, self.name, settings, self.data.device, numbers, latex,
                                  **self._extra())

    def _extra(self) -> dict:
        return {"profile_config": self.profile, "dataset": self.data.name, "theta_o": self.theta_o()}


def setup(profile: str | config.Profile = "smoke", data_root: str | None = None, progress: bool = True,
          development: bool = False, **overrides: Any) -> Experiment:
    """Profile (by name or object) + its data + θ_o (trained once, then from the cache).

    development=True: the development split instead (profile.dev_holdout seeded training images
    are its test set, the real test set is dropped from it) with its own θ_o, for choices that
    the final test-set numbers must not see.
    """
    if not isinstance(profile, (str, config.Profile)):
        raise TypeError(f"fvlib.setup needs a profile name ({', '.join(config.PROFILE_NAMES)}) or a "
                        f"config.Profile, got {type(profile).__name__} {profile!r}; e.g. fvlib.setup('smoke')")
    prof = config.get_profile(profile) if isinstance(profile, str) else profile
    if data_root:
        overrides["data_root"] = os.path.abspath(os.path.expanduser(data_root))
    prof = prof.replace(**overrides) if overrides else prof
    if prof.data_root and prof.dataset == "digits":  # it would be ignored, yet recorded as used
        raise ValueError(f"profile {prof.name!r} uses the embedded digits data and takes no data root "
                         f"(got {prof.data_root}); drop it, or choose a CIFAR-10 / ImageNet-10 profile")
    data = config.load_data(prof)
    if development:
        data = data.holdout(prof.dev_holdout, prof.dev_seed)
    model, info = train.train_original(prof.model, data, prof.train, progress)
    return Experiment(prof, data, model, info, development)

