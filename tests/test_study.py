"""Study runner: cached resumable records, shared splits, tables, Table A1, paper comparison."""
from __future__ import annotations

import pytest

from fvlib import baselines, labels, metrics, mia, paper, study, systems, train

METHODS = ("retrain", "ft", "ga", "fv")


def _count_training(monkeypatch, calls, fail_on=None):
    """Record every baseline run (and Retrain's training) in calls; raise at fail_on."""
    real_run, real_fit = baselines.run, train.fit

    def run(name, *a, **k):
        if name == fail_on:
            raise KeyboardInterrupt("killed")
        calls.append(name)
        return real_run(name, *a, **k)

    def fit(*a, **k):
        calls.append("retrain")
        return real_fit(*a, **k)
    monkeypatch.setattr(baselines, "run", run)
    monkeypatch.setattr(train, "fit", fit)


def test_runner_resumes_after_an_interruption(experiment, monkeypatch):
    # FT and GA with their own seed: keys no other test shares, so this test sees them computed
    import dataclasses
    prof = experiment.profile
    own = {m: dataclasses.replace(prof.baselines[m], seed=7) for m in ("ft", "ga")}
    ex = dataclasses.replace(experiment, profile=prof.replace(baselines={**prof.baselines, **own}))
    calls: list = []
    _count_training(monkeypatch, calls, fail_on="ga")
    with pytest.raises(KeyboardInterrupt):
        study.run_study(ex, "classwise", METHODS, progress=False)
    assert [c for c in calls if c != "retrain"] == ["ft", "ft"] and calls.count("retrain") <= 2
    monkeypatch.undo()
    _count_training(monkeypatch, calls)
    calls.clear()
    records = study.run_study(ex, "classwise", METHODS, progress=False)
    assert calls == ["ga", "ga"]  # nothing that finished was recomputed (Retrain's training included)
    assert len(records) == len(METHODS) * 2
    # every method of a trial used the same split
    assert (records.groupby("trial")["split_hash"].nunique() == 1).all()
    calls.clear()
    again = study.run_study(ex, "classwise", METHODS, progress=False)
    assert calls == [] and again[["UA", "RA", "TA", "MIA"]].equals(records[["UA", "RA", "TA", "MIA"]])


def test_records_carry_provenance_and_theta_o_fit(experiment):
    rec = study.run_study(experiment, "classwise", ("fv",), progress=False).iloc[0]
    prov = rec["provenance"]
    assert prov["profile"] == "smoke" and prov["dataset"] == "digits" and prov["git_sha"]
    assert prov["theta_o"]["train_acc"] > 0.9 and prov["theta_o"]["test_acc"] > 0.9
    assert prov["device"].startswith("cpu")
    assert rec["solved_together"] == 2 and rec["seconds"] == pytest.approx(rec["solve_seconds"] / 2)


def test_mia_in_a_worker_pool_equals_inline(experiment):
    split = experiment.splits("classwise", [0])[0]
    system = systems.build(experiment, "fv", [split])[0].module
    acc, job = metrics.measure(system, experiment.data, split)
    with mia.Runner(1) as pool:
        pooled = {**acc, **pool.submit(job).result()}
    inline = metrics.evaluate(system, experiment.data, split)
    assert pooled.keys() == inline.keys()  # equal, NaN included (MIA_loss of an attack without power)
    assert all(pooled[k] == inline[k] or (pooled[k] != pooled[k] and inline[k] != inline[k]) for k in inline)


def test_methods_are_checked_before_anything_runs(experiment):
    with pytest.raises(TypeError, match=r"list of names, e.g. \['fv'\]"):
        study.run_study(experiment, "classwise", "fv", progress=False)
    with pytest.raises(ValueError, match="unknown method.*'fvv'.*valid: original, retrain.*fv, fv_plus, cu_fv"):
        study.run_study(experiment, "classwise", ["fvv"], progress=False)


def test_tables(experiment):
    records = study.run_study(experiment, "classwise", METHODS, progress=False)
    summ = study.summary(records)
    means = records.groupby("method")[list(metrics.METRICS)].mean() * 100  # Avg.Gap from the records
    gap = (means.loc["fv"] - means.loc["retrain"]).abs().mean()
    assert summ.loc["fv", ("gap", "Avg.Gap")] == pytest.approx(gap)
    assert summ.loc["retrain", ("mean", "UA")] == 100.0  # Retrain never saw the class
    assert summ.loc["fv", ("mean", "UA")] > 90.0
    table = study.formatted(summ)
    assert list(table.columns) == ["UA", "MIA", "RA", "TA", "MIA power", "Avg.Gap"]
    assert table["Avg.Gap"].str.endswith("**").sum() == 1
    power = records.groupby("method")["MIA_power"].mean() * 100  # the attack's own power, per method
    assert summ[("attack", "MIA_power")].to_dict() == pytest.approx(power.to_dict())
    assert all(50.0 <= v <= 100.0 for v in power)  # a balanced accuracy, never below chance here
    strong, weak = summ.copy(), summ.copy()
    strong.loc["fv", ("attack", "MIA_power")] = 90.0
    weak.loc["fv", ("attack", "MIA_power")] = study.WEAK_ATTACK - 1  # an attack near chance is marked
    fv = labels.method("fv")
    assert not study.formatted(strong).loc[fv, "MIA"].endswith("†")
    assert study.formatted(weak).loc[fv, "MIA"].endswith("†")
    assert study.formatted(weak).drop(fv).equals(study.formatted(strong).drop(fv))  # only its own cell
    side = paper.compare(summ, "digits", "classwise")
    assert side.loc["FV (ours)", "UA paper"] == 97.88
    assert side.loc["Retrain", "Avg.Gap paper"] == 0.0
    single = study.single_solve_seconds(experiment, "classwise")
    rt = study.runtime_table({"classwise": summ}, {"classwise": single})
    assert "FV (ours), batched share (K=2)" in rt.index and "FV (ours), one solve (K=1)" in rt.index
    assert rt.loc["FV (ours), one solve (K=1)", "classwise"] == round(single / 60, 3)
    assert labels.method("retrain") in rt.index


def test_paper_numbers_recompute_gaps():
    # docs/protocol.md D12: Table 1 random CIFAR "Ours" prints 2.92; its own means give 3.00
    means = paper.table1_means("cifar10", "random")
    gap = metrics.avg_gap(means.loc["fv"].to_dict(), means.loc["retrain"].to_dict())
    assert abs(gap - 3.00) < 0.01
