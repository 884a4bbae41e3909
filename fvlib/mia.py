"""Membership-inference attacks on 1-D features (numpy only, so they run in worker processes).

MIA-Efficacy (docs/protocol.md P6): an RBF-SVC is fit on members (retain, label 1) vs non-members
(test, label 0) using the true-label confidence, then asked about the forget set; the share of
forget samples it calls non-member is the efficacy (higher = better unlearning). That number means
something only if the SVC can tell members from non-members at all, so `attack` also reports the
attack's own power (`MIA_power`: the SVC's held-out balanced accuracy on that task; 0.5 = none).
A loss-threshold attack is a second opinion; it reports NaN when it has no power. This module
imports no torch: the record store runs each record's fits as a `Job`, inline or in spawned
processes that overlap the GPU work.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ProcessPoolExecutor
import multiprocessing

import numpy as np


@dataclasses.dataclass(frozen=True)
class MIAConfig:
    """SVC membership attack of the authors' code (docs/protocol.md P6)."""
    C: float = 3.0                  # SVC(C=3, kernel="rbf", gamma="auto")
    seed: int = 1                   # RandomState seed for balanced member / non-member draws
    max_per_side: int | None = None  # optional subsampling of the training sets (off = faithful)


def balanced(a: np.ndarray, b: np.ndarray, seed: int, cap: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Draw n = min(|a|, |b|, cap) from each without replacement, each with a fresh RandomState."""
    n = min(len(a), len(b), cap or len(a))
    pick = lambda v: v[np.random.RandomState(seed).choice(len(v), n, replace=False)]  # noqa: E731
    return pick(a), pick(b)


def _svc(C: float):
    from sklearn.svm import SVC
    return SVC(C=C, kernel="rbf", gamma="auto")


def _fit(m: np.ndarray, n: np.ndarray, C: float):
    """The SVC fit on 1-D features: members m (label 1) vs non-members n (label 0)."""
    feats = np.concatenate([m, n])[:, None]
    return _svc(C).fit(feats, np.concatenate([np.ones(len(m)), np.zeros(len(n))]))


def svc_mia(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray,
            cfg: MIAConfig = MIAConfig()) -> float:
    """Share of target samples an RBF-SVC (fit on members=1 vs non-members=0) calls non-member.

    Inputs are 1-D features (N,) (e.g. true-label probability). NaN for an empty target.
    """
    m, n = balanced(np.asarray(member), np.asarray(nonmember), cfg.seed, cfg.max_per_side)
    if len(target) == 0:
        return float("nan")
    clf = _fit(m, n, cfg.C)
    return float(1.0 - clf.predict(np.asarray(target)[:, None]).mean())


def svc_power(member: np.ndarray, nonmember: np.ndarray, cfg: MIAConfig = MIAConfig()) -> float:
    """Balanced accuracy of svc_mia's SVC on its own task, members vs non-members (0.5 = no power).

    Held out, not on the fit data: on svc_mia's balanced draws, an SVC fit on the first half of
    each side scores the second half, and one fit on the second half scores the first (2-fold);
    the two fits on half the data cost less than svc_mia's one (6.7 s vs 10.9 s at 9,000 a side on a
    loaded 2-core CPU). NaN below 2 samples a side.
    """
    m, n = balanced(np.asarray(member), np.asarray(nonmember), cfg.seed, cfg.max_per_side)
    h = len(m) // 2
    if h < 1:
        return float("nan")
    tpr, tnr = [], []
    for fit, held in ((slice(0, h), slice(h, None)), (slice(h, None), slice(0, h))):
        clf = _fit(m[fit], n[fit], cfg.C)
        tpr.append(clf.predict(m[held][:, None]))
        tnr.append(1.0 - clf.predict(n[held][:, None]))
    return float((np.concatenate(tpr).mean() + np.concatenate(tnr).mean()) / 2)


def _threshold(member: np.ndarray, nonmember: np.ndarray, seed: int) -> tuple[float, float]:
    """(threshold, advantage max(TPR − FPR)) of "loss <= t -> member" on balanced random draws."""
    m, n = balanced(np.asarray(member), np.asarray(nonmember), seed)
    m, n = np.sort(m), np.sort(n)
    cands = np.unique(np.concatenate([m, n]))
    tpr = np.searchsorted(m, cands, side="right") / len(m)  # vectorised over every candidate
    fpr = np.searchsorted(n, cands, side="right") / len(n)
    best = int(np.argmax(tpr - fpr))
    return float(cands[best]), float(tpr[best] - fpr[best])


def threshold_advantage(member: np.ndarray, nonmember: np.ndarray, seed: int = 1) -> float:
    """How well the best loss threshold separates members from non-members (0 = not at all)."""
    return _threshold(member, nonmember, seed)[1]


def chance_advantage(n: int, alpha: float = 0.05) -> float:
    """The advantage max(TPR − FPR) that two samples of n from ONE distribution exceed with
    probability alpha: the one-sided two-sample Kolmogorov-Smirnov bound sqrt(ln(1/alpha) / n)."""
    return float(np.sqrt(np.log(1 / alpha) / n)) if n > 0 else float("inf")


def threshold_mia(member: np.ndarray, nonmember: np.ndarray, target: np.ndarray,
                  seed: int = 1) -> float:
    """Loss-threshold attack: the loss threshold that best separates balanced random draws of
    members (low loss) and non-members; share of target (N,) losses above it (called non-member).

    NaN when the attack has no power: its advantage is within chance (chance_advantage, 5 %), e.g.
    identical members and non-members (advantage 0), where any share would be an artefact."""
    t, adv = _threshold(member, nonmember, seed)
    if adv <= chance_advantage(min(len(member), len(nonmember))):
        return float("nan")
    return float((np.asarray(target) > t).mean())


def attack(features: dict[str, np.ndarray], cfg: MIAConfig) -> dict[str, float]:
    """{MIA, MIA_power, MIA_loss} from per-sample features: p_retain, p_test, p_forget (true-label
    probability) and l_retain, l_test, l_forget (cross-entropy), each (N,) float. MIA_power near
    0.5 means the SVC cannot tell retain from test, and MIA-Efficacy is then an artefact."""
    f = features
    return {"MIA": svc_mia(f["p_retain"], f["p_test"], f["p_forget"], cfg),
            "MIA_power": svc_power(f["p_retain"], f["p_test"], cfg),
            "MIA_loss": threshold_mia(f["l_retain"], f["l_test"], f["l_forget"], cfg.seed)}


@dataclasses.dataclass(frozen=True)
class Job:
    """The attack fits of one record, deferred: per-sample features in, {MIA, MIA_loss} out.

    A job is plain data (numpy arrays and a config), so it runs anywhere: inline, in a spawned
    process beside a GPU, or as a CPU task of a cluster.
    """
    features: dict[str, np.ndarray]
    cfg: MIAConfig = MIAConfig()

    def __call__(self) -> dict[str, float]:
        return attack(self.features, self.cfg)


def run_job(job: Job) -> dict:
    """job() and where it ran ({MIA, MIA_loss, mia_ran_on: {host, pid}}): the body of a cluster
    executor's 1-CPU task, importable without torch, so a fresh worker starts fast."""
    import os
    import socket
    return {**job(), "mia_ran_on": {"host": socket.gethostname(), "pid": os.getpid()}}


class Runner:
    """Runs jobs inline (workers < 1) or in a pool of spawned processes (no forked CUDA/OpenMP
    state); a context manager that shuts its pool down."""

    def __init__(self, workers: int = 0):
        self.pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                     if workers >= 1 else None)

    def submit(self, job: Job) -> Future:
        """job() in the pool, or computed now (a finished Future) without one."""
        if self.pool is not None:
            return self.pool.submit(job)
        done: Future = Future()
        done.set_result(job())
        return done

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=exc[0] is not None)
