"""The record store: one record per (kind, identity), resumable, damaged records recomputed."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fvlib import records


def _grid(experiment, calls, items=("a", "b")):
    def compute(ex, system, split, item):
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


def test_a_record_under_another_key_or_without_its_fields_is_recomputed(experiment):
    calls: list = []
    _grid(experiment, calls, items=("k",))
    split = experiment.splits("classwise")[0]
    key = records.key(experiment, "unit", "original", split, None, "k")
    path = records.path("unit", key)
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "key": "0123456789abcdef"}))  # a copy of another record
    calls.clear()
    with pytest.warns(UserWarning, match="not its file's"):
        out = _grid(experiment, calls, items=("k",))
    assert calls == [(0, "k")] and out[0]["key"] == key
    # a grid names the fields its records must hold: one without them is damaged, not served
    del rec["value"]
    path.write_text(json.dumps(rec))

    def compute(ex, system, split, item):
        calls.append((split.trial, item))
        return {"value": f"{item}{split.trial}"}
    calls.clear()
    grid = records.Grid("unit", "original", experiment.splits("classwise"), ["k"], compute, fields=("value",))
    with pytest.warns(UserWarning, match="missing key"):
        out = records.run(experiment, [grid])[0]
    assert calls == [(0, "k")] and out[0]["value"] == "k0"


def test_every_missing_unit_of_a_study_goes_to_the_executor_at_once(experiment):
    seen = []

    class Spy(records.Serial):
        def run(self, ex, units, progress):
            seen.append([(u.grid.method, [s.trial for s in u.splits]) for u in units])
            return super().run(ex, units, progress)

    def compute(ex, system, split, item):
        return {"value": item}
    ex = dataclasses.replace(experiment, executor=Spy())
    grids = [records.Grid("spy", m, experiment.splits("classwise"), ["a"], compute) for m in ("original", "ga")]
    records.run(ex, grids)
    assert seen == [[("original", [0, 1]), ("ga", [0, 1])]]
    records.run(ex, grids)
    assert seen[-1] == []  # nothing missing: an empty plan


def test_diverged_results_are_flagged_not_silently_served(experiment):
    from fvlib import systems
    from fvlib.forget_vector import ForgetVector
    split = experiment.splits("classwise")[0]
    rec = records.flag({"RA": 0.111}, num_classes=10)
    assert "near chance" in rec["warnings"][0]
    assert "warnings" not in records.flag({"RA": 0.95}, num_classes=10)
    wild = ForgetVector(torch.full(experiment.data.image_shape, 843.0))
    system = systems.System(wild.wrap(experiment.original), "fv", 0.0)
    assert "diverged" in records.base_fields(experiment, system, split, 0.0)["warnings"][0]
    sane = systems.System(ForgetVector(torch.full(experiment.data.image_shape, 0.5)).wrap(experiment.original),
                          "fv", 0.0)
    assert "warnings" not in records.base_fields(experiment, sane, split, 0.0)
