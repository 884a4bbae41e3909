"""Shift robustness, Table 2 transfer and the white-box restore attack (fvlib.robustness), on digits."""
from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from fvlib import config, metrics, robustness, splits, study
from fvlib.cache import cache_dir

METRIC_KEYS = ("UA", "RA", "TA", "MIA")


@pytest.fixture(scope="module")
def env(digits, original, tmp_path_factory):
    """(profile, data, θ_o) with a private cache; Retrain and FV shortened to keep the tests fast."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FVLIB_CACHE", str(tmp_path_factory.mktemp("robustness-cache")))
    base = config.get_profile("smoke")
    ucfg = dataclasses.replace(base.unlearn_cfg(), retrain=dataclasses.replace(base.train, epochs=3))
    profile = base.replace(unlearn=ucfg, fv=dataclasses.replace(base.fv, epochs=3),
                           fv_random=dataclasses.replace(base.fv_random, epochs=3))
    yield profile, digits, original
    mp.undo()


@pytest.fixture(scope="module")
def shifted(env):
    """θ_o evaluated on class-wise trial 0 under every shift (PGD on a 48-image subsample per set)."""
    profile, data, original = env
    split = splits.for_trial(data, "classwise", 0)
    return {s: robustness.evaluate_shifted(original, data, split, s, max_eval=48)
            for s in robustness.SHIFT_ORDER}


def test_shifted_view_shapes_dtype_and_pgd_budget(env):
    _, data, original = env
    tr, te = robustness.shifted_view("benign", data)
    assert tr is data.train_x or torch.equal(tr, data.train_x)
    gtr, gte = robustness.shifted_view("gn1", data, seed=0)
    assert gtr.dtype == torch.uint8 and gtr.shape == data.train_x.shape and gte.shape == data.test_x.shape
    assert not torch.equal(gtr, data.train_x)
    idx_tr, idx_te = torch.arange(0, 40, 2), torch.arange(5)
    atr, ate = robustness.shifted_view("pgd", data, model=original, train_idx=idx_tr, test_idx=idx_te)
    assert atr.dtype == torch.uint8 and atr.shape == (20, *data.train_x.shape[1:]) and len(ate) == 5
    diff = (atr.int() - data.train_x[idx_tr].int()).abs()
    assert diff.max() <= 8 and diff.sum() > 0  # ε = 8/255, quantised: within 8 grey levels
    with pytest.raises(ValueError, match="unknown shift"):
        robustness.shifted_view("fog", data)


def test_shifted_metrics_are_fractions(shifted):
    for s, res in shifted.items():
        assert set(METRIC_KEYS) <= set(res), s
        assert all(0.0 <= res[k] <= 1.0 for k in METRIC_KEYS), (s, res)


def test_gaussian_noise_hurts_more_when_stronger(shifted):
    ta = {s: shifted[s]["TA"] for s in ("benign", "gn1", "gn2")}
    assert ta["benign"] >= ta["gn1"] - 0.01 and ta["gn1"] >= ta["gn2"] - 0.01, ta
    assert ta["gn2"] < ta["benign"] - 0.02, ta  # σ = 0.2 costs θ_o real accuracy
    assert shifted["gn2"]["UA"] >= shifted["benign"]["UA"]  # ... and on D_f too (Origin's UA rises)


def test_max_eval_only_touches_pgd(env, shifted):
    _, data, original = env
    split = splits.for_trial(data, "classwise", 0)
    full = metrics.evaluate(original, data, split)
    assert shifted["benign"] == pytest.approx({k: full[k] for k in shifted["benign"]})


def test_shift_study_records_are_cached_and_resumed(env, monkeypatch):
    profile, data, original = env
    kw = dict(methods=("original", "ga"), shifts=("benign", "gn1", "pgd"), trials=[0],
              max_eval=32, progress=False)
    first = robustness.shift_study(profile, data, original, **kw)
    assert len(first) == 6 and {"method", "trial", "shift", *METRIC_KEYS} <= set(first.columns)
    assert first[list(METRIC_KEYS)].stack().between(0, 1).all()
    files = sorted((cache_dir() / "records_shift").glob("*.json"))
    assert len(files) == 6

    def boom(*a, **k):
        raise AssertionError("recomputed a cached record")
    with monkeypatch.context() as m:
        m.setattr(robustness, "evaluate_shifted", boom)
        m.setattr(study, "unlearned_model", boom)
        again = robustness.shift_study(profile, data, original, **kw)
    pd.testing.assert_frame_equal(first, again)

    # resume: delete one record -> exactly one evaluation is redone
    victim = first[(first["method"] == "ga") & (first["shift"] == "gn1")]["config_hash"].item()
    (cache_dir() / "records_shift" / f"{victim}.json").unlink()
    calls = []
    real = robustness.evaluate_shifted
    monkeypatch.setattr(robustness, "evaluate_shifted", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    resumed = robustness.shift_study(profile, data, original, **kw)
    assert calls == ["gn1"]
    pd.testing.assert_frame_equal(first.drop(columns=["seconds", "git_sha"]),
                                  resumed.drop(columns=["seconds", "git_sha"]))


def test_whitebox_curve_starts_at_plain_accuracy_and_grows(env):
    profile, data, original = env
    eps = (0.0, 8 / 255)
    curve = robustness.whitebox_curve(profile, data, original, methods=("fv", "ga"), eps=eps,
                                      trials=[0], progress=False)
    assert len(curve) == 4 and curve["forget_acc"].between(0, 1).all()
    split = splits.for_trial(data, "classwise", 0)
    fv = study.forget_vectors(original, data, [split], profile, progress=False)[0]
    plain = 1.0 - metrics.evaluate(original, data, split, fv.delta, mia=None)["UA"]
    acc = curve[curve["method"] == "fv"].set_index("eps")["forget_acc"]
    assert acc[0.0] == pytest.approx(plain, abs=1e-6)
    assert acc[8 / 255] >= acc[0.0]
    ga = curve[curve["method"] == "ga"].set_index("eps")["forget_acc"]
    assert ga[8 / 255] >= ga[0.0]
    table = robustness.whitebox_summary(curve)
    assert list(table.columns) == [0, 8] and "FV (ours)" in table.index


def test_transfer_table_columns_and_retrain(env):
    profile, data, original = env
    records = robustness.transfer_records(profile, data, original, ("original", "retrain", "fv"),
                                          trials=[0], progress=False)
    assert set(records["condition"]) == set(robustness.TRANSFER_COLUMNS)
    assert records["UA"].between(0, 1).all()
    retrain = records[(records["method"] == "retrain") & (records["condition"] == "test_class")]
    assert retrain["UA"].item() == 1.0
    table = robustness.transfer_summary(records)
    assert list(table.columns) == [f"{c}_{s}" for c in robustness.TRANSFER_COLUMNS
                                   for s in ("mean", "std", "paper", "diff")]
    assert list(table.index) == ["Origin", "Retrain", "FV (ours)"]
    assert table.loc["Retrain", "test_class_mean"] == 100.0
    assert table.loc["FV (ours)", "et1_paper"] == 85.03 and np.isnan(table.loc["Origin", "gn1_paper"])
    assert table.loc["FV (ours)", "gn1_diff"] == pytest.approx(table.loc["FV (ours)", "gn1_mean"] - 78.32)
    text = robustness.format_transfer(table)
    assert text.shape == (3, 9) and text.loc["Origin"].iloc[1] == "–"


def test_plots_return_figures_and_numbers():
    rows = [{"method": m, "trial": t, "shift": s, "UA": 0.5, "RA": 0.9, "TA": 0.8, "MIA": 0.4 + 0.1 * t}
            for m in ("original", "retrain") for t in (0, 1) for s in robustness.SHIFT_ORDER]
    fig, numbers = robustness.plot_shift_curves(pd.DataFrame(rows), ["original", "retrain"])
    assert len(fig.axes) == 4 and numbers["conditions"][0] == "Benign"
    assert numbers["MIA"]["Retrain"]["std"][0] == pytest.approx(5.0)
    curve = pd.DataFrame([{"method": "fv", "trial": 0, "eps": e, "forget_acc": e * 10}
                          for e in robustness.WHITEBOX_EPS])
    fig2, wb = robustness.plot_whitebox(curve)
    assert wb["FV (ours)"]["eps_255"] == [0, 1, 2, 4, 8]
    plt.close(fig)
    plt.close(fig2)
