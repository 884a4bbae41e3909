"""The record store: one record per (kind, identity), resumable, damaged records recomputed."""
from __future__ import annotations

import json

import pytest

from fvlib import records


def _grid(experiment, calls, items=("a", "b")):
    def compute(system, split, item):
        calls.append((split.trial, item))
        return {"value": f"{item}{split.trial}"}
    return records.grid(experiment, "unit", "original", experiment.splits("classwise"), list(items), compute)


def test_grid_computes_only_what_is_missing(experiment):
    calls: list = []
    first = _grid(experiment, calls)
    assert calls == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]
    assert [r["value"] for r in first] == ["a0", "b0", "a1", "b1"]
    calls.clear()
    again = _grid(experiment, calls, items=("a", "b", "c"))
    assert calls == [(0, "c"), (1, "c")] and [r["value"] for r in again][:2] == ["a0", "b0"]


@pytest.mark.parametrize("damage", ["", '{"kind": "unit", "ke', "{}", "[1, 2]"])
def test_damaged_record_is_recomputed_with_a_warning(experiment, damage):
    calls: list = []
    _grid(experiment, calls, items=("d",))
    split = experiment.splits("classwise")[0]
    path = records.path("unit", records.key(experiment, "unit", "original", split, None, "d"))
    path.write_text(damage)
    calls.clear()
    with pytest.warns(UserWarning, match=path.name):
        out = _grid(experiment, calls, items=("d",))
    assert calls == [(0, "d")] and out[0]["value"] == "d0"
    assert json.loads(path.read_text())["value"] == "d0"


def test_provenance_is_written_in_one_place(experiment):
    out = _grid(experiment, [], items=("p",))[0]
    prov = out["provenance"]
    assert {"git_sha", "device", "torch", "profile", "dataset", "theta_o"} <= set(prov)
    assert prov["theta_o"]["fingerprint"] == experiment.identity[1]
    assert out["split_hash"] == experiment.splits("classwise")[0].hash and out["method"] == "original"
