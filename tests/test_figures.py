"""Figures and tables are written atomically with a provenance sidecar."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from fvlib import cache, figures


def test_save_writes_png_pdf_and_sidecar():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = figures.save(fig, "t_fig", "unit", {"y": [1, 0]}, config={"a": 1})
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and paths["pdf"].read_bytes()[:4] == b"%PDF"
    side = json.loads(paths["json"].read_text())
    assert side["numbers"] == {"y": [1, 0]} and side["provenance"]["config"] == {"a": 1}
    assert {"git_sha", "torch", "device", "fvlib"} <= set(side["provenance"])


def test_save_table_formats():
    df = pd.DataFrame({"method": ["FV"], "UA": ["97.9±0.3"]}).set_index("method")
    paths = figures.save_table(df, "t_tab", "unit")
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
