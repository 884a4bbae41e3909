"""Sensitivity sweeps (fvlib.sensitivity): τ sweep, λ grid, Beta sweep and rule, records, plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import fvlib.metrics
import fvlib.solve
from fvlib import config, records, sensitivity, solve
from fvlib.experiment import Experiment


@pytest.fixture(scope="module")
def ex(digits, original):
    return Experiment(config.get_profile("smoke"), digits, original, info={})


@pytest.fixture(scope="module")
def taus(ex):
    """The smoke profile's τ grid (0, 1, 2) at its sweep epochs (2), class-wise trial 0."""
    return sensitivity.tau_sweep(ex, "classwise", trials=[0])


def _count(monkeypatch, module, name):
    calls, real = [], getattr(module, name)

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, counting)
    return calls


def test_tau_sweep_rows_follow_the_profile(ex, taus):
    sizes = sensitivity.sizes(ex)
    assert taus["tau"].tolist() == list(sizes.taus) == [0.0, 1.0, 2.0] and (taus["trial"] == 0).all()
    assert (taus["epochs"] == sizes.epochs).all() and (taus["objective"] == "code").all()
    for col in ("UA", "RA", "TA", "MIA", "avg"):
        assert taus[col].between(0, 1).all(), col
    assert (taus["avg"] - taus[["UA", "RA", "TA", "MIA"]].mean(axis=1)).abs().max() < 1e-12
    assert taus["key"].is_unique
    # records come from the one store, with its provenance (code version, θ_o)
    rec = records.read("sweep", taus["key"].iloc[0])
    assert rec["config"]["tau"] == 0.0 and rec["config"]["epochs"] == sizes.epochs
    assert rec["provenance"]["git_sha"] and rec["provenance"]["theta_o"]["fingerprint"] == ex.identity[1]


def test_tau_changes_delta_norm(taus):
    """A larger τ keeps the forget hinge active past margin 0, so δ grows with τ."""
    norms = taus.set_index("tau")["delta_l2"]
    assert norms.is_unique and norms.is_monotonic_increasing, norms.tolist()
    assert norms.loc[2.0] > norms.loc[0.0] + 0.05, norms.tolist()


def test_sweep_rerun_computes_nothing_and_resumes(ex, taus, monkeypatch):
    solves = _count(monkeypatch, fvlib.solve, "solve_many")
    evals = _count(monkeypatch, fvlib.metrics, "measure")
    again = sensitivity.tau_sweep(ex, "classwise", trials=[0])
    assert solves == [] and evals == []
    # MIA_loss is NaN on digits (the loss attack has no power); a record stores NaN as JSON null,
    # which a resumed frame holds as None: compare it as the float column it is
    pd.testing.assert_frame_equal(again.astype({"MIA_loss": float}), taus.astype({"MIA_loss": float}))
    # resume: only the missing trial is solved and scored, the point's trials in one solve
    more = sensitivity.tau_sweep(ex, "classwise", taus=[0.0], trials=[0, 1])
    assert len(more) == 2 and more["key"].iloc[0] == taus["key"].iloc[0]
    assert [[s.trial for s in args[2]] for args, _ in solves] == [[1]] and len(evals) == 1


def test_same_config_shared_across_sweeps(ex, taus, monkeypatch):
    """Code-form (λ1, λ2) = (1, 1) is the profile's τ = 1 config: one record serves both sweeps."""
    monkeypatch.setattr(solve, "solve_many", lambda *a, **k: pytest.fail("should be cached"))
    grid = sensitivity.lambda_grid(ex, "classwise", [1.0], [1.0], objective="code", trials=[0])
    assert grid["UA"].tolist() == taus.loc[taus["tau"] == 1.0, "UA"].tolist()
    assert grid["key"].tolist() == taus.loc[taus["tau"] == 1.0, "key"].tolist()


def test_lambda_grid_shape_and_plot(ex):
    df = sensitivity.lambda_grid(ex, "random", trials=[0], epochs=1)
    assert len(df) == 4 and (df["objective"] == "paper").all() and (df["epochs"] == 1).all()
    assert set(zip(df["lambda1"], df["lambda2"])) == {(1.0, 0.0), (1.0, 1.0), (3.0, 0.0), (3.0, 1.0)}
    assert df[["UA", "RA", "TA", "MIA", "avg"]].stack().between(0, 1).all()
    # λ2 = 0: nothing pulls δ back, so it is larger than with the squared-norm penalty
    by = df.set_index(["lambda1", "lambda2"])["delta_l2"]
    assert by.loc[(1.0, 0.0)] > by.loc[(1.0, 1.0)] and by.loc[(3.0, 0.0)] > by.loc[(3.0, 1.0)]
    table = sensitivity.lambda_table(df, "random")
    assert table.shape == (2, 2) and list(table.index) == [1.0, 3.0] and list(table.columns) == [0.0, 1.0]
    fig = sensitivity.plot_lambda(df)
    assert "paper Eq. 4" in fig._suptitle.get_text()
    plt.close(fig)


def test_lambda_and_beta_config_forms():
    base = solve.FVConfig(beta=3.0, beta_per_class=(3.0, 8.0, 4.0, 5.0, 5.0, 6.0, 3.0, 7.0, 4.0, 10.0))
    paper = sensitivity.lambda_config(base, 2, 4, "paper")
    assert (paper.objective, paper.lambda1, paper.lambda2) == ("paper", 2.0, 4.0)
    code = sensitivity.lambda_config(base, 2, 4, "code", epochs=5)
    assert (code.objective, code.alpha, code.lambda_norm) == ("code", 2.0, 4.0)
    assert (code.beta, code.epochs) == (3.0, 5)
    with pytest.raises(ValueError, match="objective"):
        sensitivity.lambda_config(base, 1, 1, "other")
    b9 = sensitivity.beta_config(base, 9)
    assert (b9.beta, b9.beta_per_class, b9.epochs) == (9.0, None, base.epochs)
    with pytest.raises(ValueError, match="Beta"):
        sensitivity.beta_config(paper, 9)


def test_beta_sweep_records(ex):
    df = sensitivity.beta_sweep(ex, "random", betas=(1, 9), trials=[0], epochs=1)
    assert df["beta"].tolist() == [1.0, 9.0] and df["scenario"].eq("random").all()
    cfgs = [records.read("sweep", k)["config"] for k in df["key"]]
    assert [c["beta"] for c in cfgs] == [1.0, 9.0] and all(c["epochs"] == 1 for c in cfgs)
    # a 9x forget weight pushes δ further and forgets at least as much
    d = df.set_index("beta")
    assert d.loc[9.0, "delta_l2"] > d.loc[1.0, "delta_l2"] and d.loc[9.0, "UA"] >= d.loc[1.0, "UA"]


def _beta_frame(ua_by_beta: dict[float, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"scenario": "random", "beta": b, "trial": t, "UA": ua}
                         for b, uas in ua_by_beta.items() for t, ua in enumerate(uas)])


def test_choose_beta_rule():
    df = _beta_frame({9: [0.30, 0.34], 1: [0.02, 0.04], 3: [0.08, 0.10]})  # means 0.32, 0.03, 0.09
    assert sensitivity.choose_beta(df, 0.10) == 3.0     # 0.09 reaches 0.10 − 1 point (boundary)
    assert sensitivity.choose_beta(df, 0.101) == 9.0    # 0.09 falls short; 9 is the next that reaches
    assert sensitivity.choose_beta(df, 0.02) == 1.0     # the smallest reaching Beta wins
    assert sensitivity.choose_beta(df, 0.50) == 9.0     # none reaches: highest mean UA
    tie = _beta_frame({1: [0.1], 3: [0.2], 9: [0.2]})
    assert sensitivity.choose_beta(tie, 0.9) == 3.0     # tie on the highest UA: the smaller Beta
    with pytest.raises(ValueError, match="fraction"):
        sensitivity.choose_beta(df, 10.0)               # Retrain UA given in %
    with pytest.raises(ValueError, match="one scenario"):
        sensitivity.choose_beta(pd.concat([df, df.assign(scenario="classwise")]), 0.1)


def test_plot_tau_and_summary(taus):
    both = pd.concat([taus.assign(scenario="classwise"), taus.assign(scenario="random")], ignore_index=True)
    fig = sensitivity.plot_tau(both)
    assert len(fig.axes) == 10
    plt.close(fig)
    summ = sensitivity.summarize(both, ["tau"])
    assert len(summ) == 6 and summ["trials"].eq(1).all() and {"UA_mean", "avg_std"} <= set(summ.columns)
    row = summ[(summ["scenario"] == "random") & (summ["tau"] == 1.0)].iloc[0]
    assert row["UA_mean"] == pytest.approx(100 * taus.loc[taus["tau"] == 1.0, "UA"].iloc[0])
