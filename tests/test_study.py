"""Study runner: cached resumable records, shared splits, tables, Table A1, paper comparison."""
from __future__ import annotations

import pytest

from fvlib import labels, metrics, paper, study, unlearn

METHODS = ("retrain", "ft", "ga", "fv")


def test_runner_resumes_after_an_interruption(experiment, monkeypatch):
    real_run, calls = unlearn.run, []

    def interrupted(name, *a, **k):
        if name == "ga":
            raise KeyboardInterrupt("killed")
        calls.append(name)
        return real_run(name, *a, **k)
    monkeypatch.setattr(unlearn, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(experiment, "classwise", METHODS, progress=False)
    assert calls == ["retrain", "retrain", "ft", "ft"]

    def counting(name, *a, **k):
        calls.append(name)
        return real_run(name, *a, **k)
    monkeypatch.setattr(unlearn, "run", counting)
    calls.clear()
    records = study.run_study(experiment, "classwise", METHODS, progress=False)
    assert calls == ["ga", "ga"]  # nothing that finished was recomputed
    assert len(records) == len(METHODS) * 2
    # every method of a trial used the same split
    assert (records.groupby("trial")["split_hash"].nunique() == 1).all()
    calls.clear()
    again = study.run_study(experiment, "classwise", METHODS, progress=False)
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
    system = experiment.system("fv", split)
    from fvlib import mia
    pool = mia.pool(1)
    try:
        acc, fut = metrics.evaluate_async(system, experiment.data, split, pool=pool)
        pooled = {**acc, **fut.result()}
    finally:
        pool.shutdown()
    inline = metrics.evaluate(system, experiment.data, split)
    assert pooled.keys() == inline.keys()  # equal, NaN included (MIA_loss of an attack without power)
    assert all(pooled[k] == inline[k] or (pooled[k] != pooled[k] and inline[k] != inline[k]) for k in inline)


def test_tables(experiment):
    records = study.run_study(experiment, "classwise", METHODS, progress=False)
    summ = study.summary(records)
    assert summ.loc["retrain", ("gap", "Avg.Gap")] == 0.0
    assert summ.loc["retrain", ("mean", "UA")] == 100.0  # Retrain never saw the class
    assert summ.loc["fv", ("mean", "UA")] > 90.0
    table = study.formatted(summ)
    assert list(table.columns) == ["UA", "MIA", "RA", "TA", "Avg.Gap"]
    assert table["Avg.Gap"].str.endswith("**").sum() == 1
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
