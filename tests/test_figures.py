"""Figures and tables are written atomically with a provenance sidecar."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from fvlib import cache, figures
from fvlib.provenance import provenance


def test_save_writes_png_pdf_and_sidecar():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = figures.save(fig, "t_fig", "unit", {"y": [1, 0]}, provenance(settings={"a": 1}))
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and paths["pdf"].read_bytes()[:4] == b"%PDF"
    side = json.loads(paths["json"].read_text())
    assert side["numbers"] == {"y": [1, 0]} and side["provenance"]["settings"] == {"a": 1}
    assert {"git_sha", "torch", "device", "fvlib"} <= set(side["provenance"])


def test_save_table_formats():
    df = pd.DataFrame({"method": ["FV"], "UA": ["97.9±0.3"]}).set_index("method")
    paths = figures.save_table(df, "t_tab", "unit", None, provenance())
    assert "| FV | 97.9±0.3 |" in paths["md"].read_text()
    assert r"97.9$\pm$0.3" in paths["tex"].read_text()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"

    def boom(p):
        p.write_text("half")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        cache.atomic_write(target, boom)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_to_jsonable_handles_numpy_and_frames():
    import numpy as np
    from fvlib.provenance import to_jsonable
    frame = pd.DataFrame({("mean", "UA"): [1.5, float("nan")]}, index=["fv", "ga"])
    assert to_jsonable({"a": np.arange(3), "f": np.float32(0.5), "df": frame}) == {
        "a": [0, 1, 2], "f": 0.5, "df": [{"index": "fv", "mean UA": 1.5}, {"index": "ga", "mean UA": None}]}
    assert json.loads(json.dumps(to_jsonable(pd.Series({"x": np.int64(2)})))) == {"x": 2}


def test_experiment_saver_binds_profile_device_and_theta_o(experiment):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    side = json.loads(experiment.save(fig, "t_bound", {"v": 1}, settings={"s": 2})["json"].read_text())
    prov = side["provenance"]
    assert side["profile"] == "smoke" and prov["device"].startswith("cpu") and prov["settings"] == {"s": 2}
    assert prov["theta_o"]["fingerprint"] == experiment.identity[1] and prov["theta_o"]["train_acc"] > 0.9
    table = experiment.save_table(pd.DataFrame({"UA": [1.0]}, index=["fv"]), "t_bound_table")
    record = experiment.provenance()
    table_prov = json.loads(table["json"].read_text())["provenance"]
    # one provenance shape for records, figures and tables
    assert table_prov["dataset"] == "digits" and set(record) <= set(table_prov) <= set(record) | {"settings"}
