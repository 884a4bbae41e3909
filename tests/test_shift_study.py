"""Shift robustness (fvlib.shift_study, Fig. 2 / A1) on digits: shifted views (fvlib.views),
metrics, records."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from fvlib import metrics, records, shift_study, systems, views

METRIC_KEYS = ("UA", "RA", "TA", "MIA")


@pytest.fixture(scope="module")
def ex(short_experiment):
    return short_experiment


@pytest.fixture(scope="module")
def split(ex):
    return ex.splits("classwise", [0])[0]


def evaluate_shifted(system, data, split, shift, max_eval=None):
    """UA, RA, TA, MIA of a system with every set shifted."""
    view, compact = views.shifted_data(system, data, split, shift, max_eval=max_eval)
    return metrics.evaluate(system, view, compact)


@pytest.fixture(scope="module")
def shifted(ex, split):
    """θ_o on class-wise trial 0 under every shift (PGD on a 48-image subsample per set)."""
    return {s: evaluate_shifted(ex.original, ex.data, split, s, max_eval=48) for s in views.SHIFT_ORDER}


def test_shifted_view_shapes_dtype_and_pgd_budget(ex):
    data = ex.data
    tr, te = views.shifted_view("benign", data)
    assert torch.equal(tr, data.train_x) and torch.equal(te, data.test_x)
    gtr, gte = views.shifted_view("gn1", data, seed=0)
    assert gtr.dtype == torch.uint8 and gtr.shape == data.train_x.shape and gte.shape == data.test_x.shape
    assert not torch.equal(gtr, data.train_x)
    idx_tr, idx_te = torch.arange(0, 40, 2), torch.arange(5)
    atr, ate = views.shifted_view("pgd", data, system=ex.original, train_idx=idx_tr, test_idx=idx_te)
    assert atr.dtype == torch.uint8 and atr.shape == (20, *data.train_x.shape[1:]) and len(ate) == 5
    diff = (atr.int() - data.train_x[idx_tr].int()).abs()
    assert diff.max() <= 8 and diff.sum() > 0  # ε = 8/255, quantised: within 8 grey levels
    with pytest.raises(ValueError, match="unknown shift"):
        views.shifted_view("fog", data)


def test_shifted_metrics_are_fractions(shifted):
    for s, res in shifted.items():
        assert set(METRIC_KEYS) <= set(res), s
        assert all(0.0 <= res[k] <= 1.0 for k in METRIC_KEYS), (s, res)


def test_gaussian_noise_hurts_more_when_stronger(shifted):
    ta = {s: shifted[s]["TA"] for s in ("benign", "gn1", "gn2")}
    assert ta["benign"] >= ta["gn1"] - 0.01 and ta["gn1"] >= ta["gn2"] - 0.01, ta
    assert ta["gn2"] < ta["benign"] - 0.02, ta  # σ = 0.2 costs θ_o real accuracy
    assert shifted["gn2"]["UA"] >= shifted["benign"]["UA"]  # ... and on D_f too (Origin's UA rises)


def test_pgd_shift_is_an_attack(shifted):
    # white-box PGD on θ_o: the forgotten class and the rest are both misclassified far more often
    assert shifted["pgd"]["TA"] < shifted["benign"]["TA"] - 0.3
    assert shifted["pgd"]["UA"] > shifted["benign"]["UA"] + 0.3


def _one_image(split) -> dict[str, float]:
    """Tolerance per metric: one image of its set. The shifted view orders train as D_f then D_r, so
    its batches hold other images than the plain evaluation's: a near-tie argmax, or an SVC call on
    a feature that moved in the last bit, may flip for one image."""
    n_f, n_r, n_t = int(split.forget.sum()), int(split.retain.sum()), int(split.test_eval.sum())
    return {"UA": 1.5 / n_f, "MIA": 1.5 / n_f, "MIA_loss": 1.5 / n_f, "RA": 1.5 / n_r, "TA": 1.5 / n_t,
            "MIA_power": 1.5 / min(n_r, n_t)}


def test_max_eval_only_touches_pgd(ex, split, shifted):
    view, _ = shift_study.shifted_data(ex.original, ex.data, split, "benign", max_eval=48)
    assert len(view.train_y) == len(ex.data.train_y) and len(view.test_y) == int(split.test_eval.sum())
    full, tol = metrics.evaluate(ex.original, ex.data, split), _one_image(split)
    assert set(shifted["benign"]) == set(full)
    for k, v in shifted["benign"].items():
        assert v == pytest.approx(full[k], abs=tol[k], nan_ok=True), k


def test_pgd_cap_defaults_to_the_profile(ex):
    assert views.pgd_cap(ex) == ex.profile.sizes("shifts", views.ShiftSizes).pgd_max_eval == 32
    assert views.pgd_cap(ex, 10) == 10 and views.pgd_cap(ex, -1) is None


def test_shifted_data_subsamples_pgd_sets(ex, split):
    view, compact = views.shifted_data(ex.original, ex.data, split, "pgd", max_eval=16)
    assert len(view.train_y) == 32 and len(view.test_y) == 16  # 16 forget + 16 retain, 16 test
    assert int(compact.forget.sum()) == 16 and bool((view.train_y[:16] == 0).all())  # class 0 first
    assert view.fingerprint.endswith("-pgd")


def test_forget_vector_is_added_on_top_of_the_shift(ex, split):
    recs = shift_study.shift_study(ex, methods=("fv",), shifts=("benign", "gn2"), trials=[0], progress=False)
    system = systems.build(ex, "fv", [split])[0].module
    plain = metrics.evaluate(system, ex.data, split)
    benign = recs[recs["shift"] == "benign"].iloc[0]
    tol = _one_image(split)
    assert all(benign[k] == pytest.approx(plain[k], abs=tol[k]) for k in ("UA", "RA", "TA"))
    gn2 = recs[recs["shift"] == "gn2"].iloc[0]
    direct = evaluate_shifted(system, ex.data, split, "gn2")
    assert gn2["RA"] == pytest.approx(direct["RA"], abs=tol["RA"])  # same view; batch sizes may differ
    assert abs(gn2["RA"] - benign["RA"]) > 3 * tol["RA"]  # the noise itself costs more than a few images


def test_shift_study_records_are_cached_and_resumed(ex, monkeypatch):
    kw = dict(methods=("original", "ga"), shifts=("benign", "gn1", "pgd"), trials=[0], max_eval=32,
              progress=False)
    first = shift_study.shift_study(ex, **kw)
    assert len(first) == 6 and {"method", "trial", "shift", *METRIC_KEYS} <= set(first.columns)
    assert first[list(METRIC_KEYS)].stack().between(0, 1).all()
    assert all(records.path("shift", k).exists() for k in first["key"])
    assert first.loc[first["shift"] == "pgd", "max_eval"].eq(32).all()

    calls: list = []
    real_data, real_model = shift_study.shifted_data, systems.unlearned_model  # as the study sees them
    monkeypatch.setattr(shift_study, "shifted_data",
                        lambda *a, **k: calls.append(a[3]) or real_data(*a, **k))
    monkeypatch.setattr(systems, "unlearned_model",
                        lambda *a, **k: calls.append("model") or real_model(*a, **k))
    again = shift_study.shift_study(ex, **kw)
    assert calls == []  # nothing recomputed, no model built
    # MIA_loss is NaN on digits (the loss attack has no power); a record stores NaN as JSON null,
    # which a resumed frame holds as None: compare it as the float column it is
    pd.testing.assert_frame_equal(first.astype({"MIA_loss": float}), again.astype({"MIA_loss": float}))

    victim = first[(first["method"] == "ga") & (first["shift"] == "gn1")]["key"].item()
    records.path("shift", victim).unlink()
    resumed = shift_study.shift_study(ex, **kw)
    assert calls == ["model", "gn1"]  # one system (from the cache) and exactly the missing record
    cols = ["method", "trial", "shift", "key", "split_hash", *METRIC_KEYS]
    pd.testing.assert_frame_equal(first[cols], resumed[cols])


def test_summaries_and_plot():
    rows = [{"method": m, "trial": t, "shift": s, "UA": 0.5, "RA": 0.9, "MIA": 0.4 + 0.1 * t,
             "TA": 0.8 if s == "benign" else 0.6}
            for m in ("original", "retrain") for t in (0, 1) for s in views.SHIFT_ORDER]
    recs = pd.DataFrame(rows)
    table = shift_study.shift_summary(recs, "MIA")
    assert list(table.columns) == ["Benign", "GN1", "GN2", "ET1", "ET2", "PGD"]
    assert list(table.index) == ["Origin", "Retrain"] and table.loc["Retrain", "PGD"] == "45.00±5.00"
    overview = shift_study.shift_overview(recs)
    assert overview.loc["Origin", ("TA", "benign")] == pytest.approx(80.0)
    assert overview.loc["Origin", ("TA", "shifted")] == pytest.approx(60.0)
    fig, numbers = shift_study.plot_shift_curves(recs, ["original", "retrain"])
    assert len(fig.axes) == 4 and numbers["conditions"][0] == "Benign"
    assert numbers["MIA"]["Retrain"]["std"][0] == pytest.approx(5.0)
    assert numbers["TA"]["Origin"]["mean"][:2] == pytest.approx([80.0, 60.0])
    plt.close(fig)
