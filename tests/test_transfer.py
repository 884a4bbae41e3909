"""Table 2 (fvlib.transfer): UA on unseen forget data, next to the paper's numbers, on digits."""
from __future__ import annotations

import numpy as np
import pytest

from fvlib import paper, transfer
from fvlib.systems import METHOD_ORDER


@pytest.fixture(scope="module")
def ex(short_experiment):
    return short_experiment


@pytest.fixture(scope="module")
def recs(ex):
    return transfer.transfer_records(ex, ("original", "retrain", "fv"), trials=[0], progress=False)


def test_paper_table2_comes_from_the_json():
    t2 = paper.table2()
    assert set(t2) == set(METHOD_ORDER)
    assert all(set(cols) == set(transfer.COLUMNS) for cols in t2.values())
    assert t2["fv"]["et1"] == (85.03, 0.91) and t2["retrain"]["test_class"] == (100.0, 0.0)
    raw = paper.results()["table2_cifar10"]
    assert t2["salun"]["gn1"] == tuple(raw["salun"]["gn1"])


def test_records_cover_both_scenarios(recs):
    assert set(recs["condition"]) == set(transfer.COLUMNS)
    assert recs["UA"].between(0, 1).all() and len(recs) == 9
    assert set(recs.loc[recs["condition"] == "test_class", "scenario"]) == {"classwise"}
    assert set(recs.loc[recs["condition"] != "test_class", "scenario"]) == {"random"}
    ua = recs.set_index(["method", "condition"])["UA"]
    assert ua["retrain", "test_class"] == 1.0   # Retrain never saw the class
    assert ua["original", "test_class"] < 0.2   # θ_o recognises the class's test images
    assert ua["fv", "test_class"] > ua["original", "test_class"] + 0.5  # δ transfers to unseen images


def test_summary_and_text_table(recs):
    table = transfer.transfer_summary(recs)
    assert list(table.columns) == [f"{c}_{s}" for c in transfer.COLUMNS
                                   for s in ("mean", "std", "paper", "diff")]
    assert list(table.index) == ["original", "retrain", "fv"]  # method keys until display
    assert table.loc["retrain", "test_class_mean"] == 100.0
    assert table.loc["fv", "et1_paper"] == 85.03 and np.isnan(table.loc["original", "gn1_paper"])
    assert table.loc["fv", "gn1_diff"] == pytest.approx(table.loc["fv", "gn1_mean"] - 78.32)
    text = transfer.format_transfer(table)
    assert list(text.index) == ["Origin", "Retrain", "FV (ours)"]
    assert text.shape == (3, 9) and text.loc["Origin"].iloc[1] == "–"
    assert text.loc["FV (ours)", "D_f perturbed by ET1 (paper)"] == "85.03±0.91"
    html = transfer.styled(table).to_html()
    assert "85.03" in html and "#c6efce" in html
