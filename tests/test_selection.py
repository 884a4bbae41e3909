"""FV+ (fvlib.selection): choices only on the development split, the stated greedy rule, the Beta
stage, the ablation, and the chosen config as a Table 1 method ("fv_plus")."""
from __future__ import annotations

import dataclasses

import pytest

from fvlib import config, selection, study, train
from fvlib.baselines.retrain import RetrainConfig
from fvlib.experiment import Development, Experiment
from fvlib.solve import FVConfig


def dev_size(prof, digits) -> int:
    return round(prof.sizes("development", Development).fraction * len(digits.train_y))


def short_profile():
    """Smoke with a short Retrain and short vectors, 2 trials, E2 on one trial, E3 on both."""
    base = config.get_profile("smoke")
    retrain = RetrainConfig(base.model, dataclasses.replace(base.train, epochs=4))
    studies = {**base.studies, "selection": {"trials": 1, "beta_trials": 2, "ablation_trials": 1}}
    return base.replace(baselines={**base.baselines, "retrain": retrain}, trials=2, studies=studies,
                        fv=dataclasses.replace(base.fv, epochs=3),
                        fv_random=dataclasses.replace(base.fv_random, epochs=3))


@pytest.fixture(scope="module")
def dev(digits):
    """A development experiment (its share of held-out digits as the test set, as setup holds out),
    short Retrain and vectors."""
    prof = short_profile()
    data = digits.holdout(dev_size(prof, digits), 0)
    model, info = train.train_original(prof.model, data, prof.train, progress=False)
    return Experiment(prof, data, model, info, development=True)


@pytest.fixture(scope="module")
def small_grids():
    """Shrunk grids so a selection takes seconds (the rule is the same)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(selection, "BETA_GRID", (1.0, 8.0))
    mp.setattr(selection, "NORM_FACTORS", (0.5,))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def chosen(dev, small_grids):
    return selection.select(dev, "classwise")


def test_select_refuses_the_test_set(experiment):
    with pytest.raises(ValueError, match="development=True"):
        selection.select(experiment, "classwise")


def test_relative_cost_counts_forward_units():
    base = FVConfig(epochs=40)
    assert selection.relative_cost(base, base) == 1.0
    assert selection.relative_cost(dataclasses.replace(base, objective="distill"), base) == 1.5
    once = dataclasses.replace(base, objective="distill", distill_targets="unaugmented")
    assert selection.relative_cost(once, base) == pytest.approx(81 / 80)
    assert selection.relative_cost(dataclasses.replace(base, epochs=20), base) == 0.5


def test_development_data_is_not_the_test_set(dev, digits):
    assert dev.data.fingerprint != digits.fingerprint and len(dev.data.test_y) == dev_size(dev.profile, digits) > 200
    assert dev.provenance()["development"] is True and dev.original_info()["development"] is True


def test_selection_follows_the_stated_rule(dev, chosen):
    h = chosen.history
    assert chosen.config == selection.apply(chosen.base, chosen.steps)
    assert h["chosen"].sum() == 1 and h.loc[h["chosen"], "variant"].item() == selection.label(chosen.steps)
    assert (h["cost"] <= selection.COST_CAP + 1e-9).all()
    # E2: each taken ingredient is its round's best and lowers the Avg.Gap; a round without
    # improvement ends the search (then the Beta stage is the last round)
    e2 = h[h["round"] < h["round"].max()]
    best = e2.loc[e2["round"] == 0, "Avg.Gap"].item()
    e2_steps = [s for s in chosen.steps if "Beta" not in s[0]]
    for r in sorted(set(e2["round"]) - {0}):
        rows = e2[e2["round"] == r].sort_values(["Avg.Gap", "cost"])
        taken = r <= len(e2_steps)
        assert taken == (rows["Avg.Gap"].iloc[0] < best - 1e-9), (r, rows["Avg.Gap"].tolist(), best)
        if taken:
            assert rows["variant"].iloc[0] == selection.label(e2_steps[:r])
            best = rows["Avg.Gap"].iloc[0]
    # at most one ingredient per group (a group's ingredients change the same fields)
    fields = [tuple(sorted(f)) for _, f in e2_steps]
    assert len(fields) == len(set(fields))


def test_beta_stage_builds_a_per_class_table(dev, chosen):
    beta = [s for s in chosen.steps if "Beta" in s[0]]
    rows = chosen.history[chosen.history["round"] == chosen.history["round"].max()]
    assert set(rows["trials"]) == {2}                        # E3 uses every trial (class) by default
    if beta:
        table = beta[0][1]["beta_per_class"]
        assert len(table) == dev.data.num_classes
        assert set(table[:2]) <= {*selection.BETA_GRID, chosen.base.beta}  # grid or the current Beta
        assert set(table[2:]) == {chosen.base.beta}          # classes not tried keep the profile's Beta
        before = rows.loc[rows["variant"] == selection.label(chosen.steps[:-1]), "Avg.Gap"].item()
        assert rows.loc[rows["chosen"], "Avg.Gap"].item() < before


def test_fv_plus_is_a_table1_method(dev, chosen, monkeypatch):
    recs = study.run_study(dev, "classwise", ["retrain", "fv_plus"], [0], progress=False,
                           configs={"fv_plus": chosen.config})
    assert list(recs["method"]) == ["retrain", "fv_plus"] and recs["UA"].between(0, 1).all()
    summ = study.summary(recs)
    assert "FV+ (dev-tuned)" in study.formatted(summ).index
    with pytest.raises(ValueError, match="configs=\\{'fv_plus'"):
        study.run_study(dev, "classwise", ["fv_plus"], [0], progress=False)


def test_a_per_class_tables_own_entry_is_a_candidate():
    """E3 with a per-class table (ImageNet-10): a class keeps its table entry when that is closest."""
    import pandas as pd
    grid = {"v | Beta 1": (1.0, None), "v | Beta 8": (8.0, None)}
    rows = pd.DataFrame({"variant": ["v", "v | Beta 1", "v | Beta 8"] * 2, "trial": [0] * 3 + [1] * 3,
                         "gap": [0.5, 2.0, 3.0, 4.0, 1.0, 2.0]})
    current = FVConfig(beta=1.8, beta_per_class=(10.0, 5.0, 10.0))
    assert selection._per_class_betas(rows, grid, 3, current, "v") == (10.0, 1.0, 10.0)


def test_ablation_rows(dev, chosen):
    ab = selection.ablation(dev, "classwise", chosen, trials=[0])
    assert ab.index[0] == selection.BASE and ab.index[-1].startswith("FV+")
    assert len(ab) == 2 + 2 * len(chosen.steps)
    assert ab[list(selection.COLUMNS)].stack().between(0, 100).all()
    # each row's Avg.Gap is its own means' gap to Retrain's on the same trial
    ret = study.run_study(dev, "classwise", ["retrain"], [0], progress=False)
    ref = ret[list(selection.COLUMNS)].mean() * 100
    row = ab.iloc[0]
    assert row["Avg.Gap"] == pytest.approx((row[list(selection.COLUMNS)] - ref).abs().mean())


def test_the_choice_is_made_once_and_reused(experiment, digits, chosen, tmp_path, monkeypatch, small_grids):
    """choose() selects on the development split, writes the committed file, and later reuses it;
    it chooses again only when told to, and refuses a file made from another base config."""
    monkeypatch.setattr(selection, "CHOICES", tmp_path)
    ex = Experiment(short_profile(), digits, experiment.original, experiment.info)
    calls = []
    real = selection.select
    monkeypatch.setattr(selection, "select", lambda *a, **k: calls.append(a[0].development) or real(*a, **k))
    first = selection.choose(ex, "classwise")  # the `chosen` fixture's selection: records cached
    assert calls == [True] and selection.choice_path("smoke", "classwise").exists()
    assert first.config == chosen.config
    again = selection.choose(ex, "classwise")
    assert calls == [True] and again.config == first.config and again.steps == first.steps
    assert again.development["fingerprint"] == first.development["fingerprint"]
    assert set(again.history["variant"]) == set(first.history["variant"])
    selection.choose(ex, "classwise", reselect=True)
    assert calls == [True, True]
    other = Experiment(ex.profile.replace(fv=FVConfig(beta=2.0, epochs=3)), digits, ex.original, ex.info)
    with pytest.raises(ValueError, match="reselect=True"):
        selection.choose(other, "classwise")


def test_test_set_evaluations_are_counted(experiment, digits, chosen):
    ex = Experiment(short_profile(), digits, experiment.original, experiment.info)
    before = selection.test_evaluations(ex, "classwise")
    study.run_study(ex, "classwise", ["fv_plus"], [0], progress=False, configs={"fv_plus": chosen.config})
    assert selection.test_evaluations(ex, "classwise") == before + 1
    study.run_study(ex, "classwise", ["fv_plus"], [1], progress=False, configs={"fv_plus": chosen.config})
    assert selection.test_evaluations(ex, "classwise") == before + 1  # the same config, another trial
