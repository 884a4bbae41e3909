"""Sensitivity sweeps (fvlib.sensitivity): τ sweep, λ grid, caching/resume, plots, Grad-CAM shift table."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from fvlib import config, sensitivity, solve, splits
from fvlib import data as fvdata
from fvlib.train import TrainConfig, train_original

EPOCHS = 4  # forget-vector epochs of the τ tests (the profile's 10 would take too long)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache folder for this module (set before anything is trained or solved)."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("sens-cache")
        mp.setenv("FVLIB_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def setup(cache):
    """Smoke profile, a 600-image digits subset and a small_cnn trained on it for a few seconds."""
    profile = config.get_profile("smoke")
    data = fvdata.load("digits").subset(600, 200, seed=0)
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.1, schedule="onecycle")  # ~96 % test acc.
    model, _ = train_original(profile.model, data, cfg, progress=False)
    return profile, data, model.eval()


@pytest.fixture(scope="module")
def taus(setup):
    profile, data, model = setup
    return sensitivity.tau_sweep(profile, data, model, "classwise", taus=(0.0, 2.0), trials=[0, 1],
                                 epochs=EPOCHS, progress=False)


def test_tau_sweep_rows_and_ranges(taus):
    assert len(taus) == 4
    assert sorted(zip(taus["tau"], taus["trial"])) == [(0.0, 0), (0.0, 1), (2.0, 0), (2.0, 1)]
    for col in ("UA", "RA", "TA", "MIA", "avg"):
        assert taus[col].between(0, 1).all(), col
    avg = taus[["UA", "RA", "TA", "MIA"]].mean(axis=1)
    assert (taus["avg"] - avg).abs().max() < 1e-9
    assert (taus["epochs"] == EPOCHS).all() and (taus["objective"] == "code").all()
    assert taus["config_hash"].is_unique


def test_larger_tau_pushes_further(taus):
    """τ = 2 keeps the forget hinge active past margin 0, so δ grows larger and forgets at least as much."""
    by = taus.set_index(["tau", "trial"])
    lo, hi = by.loc[0.0], by.loc[2.0]
    assert (hi["delta_l2"] >= lo["delta_l2"] - 1e-6).all()
    assert hi["delta_l2"].sum() > lo["delta_l2"].sum() + 0.1, (lo["delta_l2"].tolist(), hi["delta_l2"].tolist())
    assert (hi["UA"] >= lo["UA"] - 1e-9).all(), (lo["UA"].tolist(), hi["UA"].tolist())


def test_sweep_is_cached_and_resumes(setup, taus, monkeypatch):
    profile, data, model = setup
    calls = []
    real = solve.solve_many

    def counting(model_, data_, split_list, cfg, progress=True):
        calls.append((cfg.tau, [s.trial for s in split_list]))
        return real(model_, data_, split_list, cfg, progress)

    def failing(*args, **kwargs):
        raise AssertionError("solve_many called although every record is cached")

    monkeypatch.setattr(solve, "solve_many", failing)
    again = sensitivity.tau_sweep(profile, data, model, "classwise", taus=(0.0, 2.0), trials=[0, 1],
                                  epochs=EPOCHS, progress=False)
    assert again[["UA", "RA", "TA", "MIA", "delta_l2"]].equals(taus[["UA", "RA", "TA", "MIA", "delta_l2"]])

    # resume: only the missing (τ, trial) pairs are solved, each τ's trials in one call
    monkeypatch.setattr(solve, "solve_many", counting)
    more = sensitivity.tau_sweep(profile, data, model, "classwise", taus=(0.0, 2.0), trials=[0, 1, 2],
                                 epochs=EPOCHS, progress=False)
    assert len(more) == 6 and calls == [(0.0, [2]), (2.0, [2])]


def test_same_config_shared_across_sweeps(setup, monkeypatch):
    """Code-form (λ1, λ2) = (1, 1) is the profile's τ = 1 config: the τ sweep reuses that record."""
    profile, data, model = setup
    grid = sensitivity.lambda_grid(profile, data, model, "classwise", lambda1s=(1,), lambda2s=(1,),
                                   objective="code", trials=[0], epochs=EPOCHS, progress=False)
    monkeypatch.setattr(solve, "solve_many", lambda *a, **k: pytest.fail("should be cached"))
    tau = sensitivity.tau_sweep(profile, data, model, "classwise", taus=(1.0,), trials=[0],
                                epochs=EPOCHS, progress=False)
    assert tau["tau"].tolist() == [1.0] and tau["UA"].tolist() == grid["UA"].tolist()


def test_lambda_grid_shape_and_plot(setup):
    profile, data, model = setup
    df = sensitivity.lambda_grid(profile, data, model, "random", lambda1s=(1, 3), lambda2s=(0, 1),
                                 trials=[0], epochs=1, progress=False)
    assert len(df) == 4 and (df["objective"] == "paper").all()
    assert set(zip(df["lambda1"], df["lambda2"])) == {(1.0, 0.0), (1.0, 1.0), (3.0, 0.0), (3.0, 1.0)}
    assert df[["UA", "RA", "TA", "MIA", "avg"]].stack().between(0, 1).all()
    table = sensitivity.lambda_table(df, "random")
    assert table.shape == (2, 2) and list(table.index) == [1.0, 3.0] and list(table.columns) == [0.0, 1.0]
    fig = sensitivity.plot_lambda(df)
    assert "paper Eq. 4" in fig._suptitle.get_text()
    plt.close(fig)


def test_lambda_config_forms():
    base = solve.FVConfig(beta=3.0)
    paper = sensitivity.lambda_config(base, 2, 4, "paper")
    assert (paper.objective, paper.lambda1, paper.lambda2) == ("paper", 2.0, 4.0)
    code = sensitivity.lambda_config(base, 2, 4, "code", epochs=5)
    assert (code.objective, code.alpha, code.lambda_norm) == ("code", 2.0, 4.0)
    assert (code.beta, code.epochs) == (3.0, 5)
    with pytest.raises(ValueError, match="objective"):
        sensitivity.lambda_config(base, 1, 1, "other")


def test_plot_tau_panels(taus):
    both = pd.concat([taus.assign(scenario="classwise"), taus.assign(scenario="random")],
                     ignore_index=True)
    fig = sensitivity.plot_tau(both)
    assert len(fig.axes) == 10
    summ = sensitivity.summarize(both, ["tau"])
    assert len(summ) == 4 and summ["trials"].eq(2).all() and {"UA_mean", "avg_std"} <= set(summ.columns)
    plt.close(fig)


def test_pick_images(setup):
    _, data, model = setup
    split = splits.classwise(data, 3)
    forget = sensitivity.pick_images(data, split.forget, 4, seed=0, model=model)
    assert len(forget) == 4 and (data.train_y[forget] == 3).all()
    assert torch.equal(forget, sensitivity.pick_images(data, split.forget, 4, seed=0, model=model))
    retain = sensitivity.pick_images(data, split.retain, 5, seed=0, spread_classes=True)
    assert len(retain) == 5 and len(set(data.train_y[retain].tolist())) == 5
    assert not split.forget[retain].any()


def test_saliency_shift_table(setup):
    profile, data, model = setup
    split = splits.classwise(data, 0)
    delta = 0.3 * torch.randn(data.image_shape, generator=torch.Generator().manual_seed(0))
    methods = {"Original": (model, None), "Noise": (model, delta)}
    sets = {"forget": (data.train_x[split.forget][:8], data.train_y[split.forget][:8]),
            "retain": (data.train_x[split.retain][:8], data.train_y[split.retain][:8])}
    table = sensitivity.saliency_shift_table(methods, sets, profile.model)
    assert list(table.index) == ["Original", "Noise"]
    for s in ("forget", "retain"):
        assert table.loc["Original", f"shift_{s}"] == pytest.approx(0.0, abs=1e-6)
        assert 0.0 <= table.loc["Noise", f"shift_{s}"] <= 2.0
        assert 0.0 <= table.loc["Original", f"acc_{s}"] <= 1.0 and table[f"n_{s}"].eq(8).all()
    with pytest.raises(ValueError, match="reference"):
        sensitivity.saliency_shift_table(methods, sets, profile.model, reference="Retrain")
