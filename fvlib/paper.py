"""The paper's published numbers (fvlib/paper_results.json) and side-by-side comparisons."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fvlib import metrics
from fvlib import labels

PATH = Path(__file__).with_name("paper_results.json")


@lru_cache(maxsize=1)
def results() -> dict:
    """All transcribed tables (values in %, [mean, std])."""
    return json.loads(PATH.read_text())


# The paper's dataset each of ours is compared with: the embedded digits (smoke) are laid out
# against CIFAR-10 to exercise the tables, not as a reproduction.
COMPARED_WITH = {"cifar10": "cifar10", "imagenet10": "imagenet10", "digits": "cifar10"}


def paper_dataset(dataset: str) -> str:
    """The paper's dataset a run is compared with; a dataset the paper has no numbers for fails."""
    if dataset not in COMPARED_WITH:
        raise ValueError(f"the paper reports no numbers for dataset {dataset!r} (it has "
                         f"{', '.join(sorted(set(COMPARED_WITH.values())))}); compare only runs on those")
    return COMPARED_WITH[dataset]


def table1_means(dataset: str, scenario: str) -> pd.DataFrame:
    """Table 1 means (%) as method x metric."""
    t = results()["table1"][paper_dataset(dataset)][scenario]
    return pd.DataFrame({m: {k: v[0] for k, v in r.items()} for m, r in t.items()}).T


def table2() -> dict[str, dict[str, tuple[float, float]]]:
    """Table 2 (CIFAR-10, ResNet-18; P9.1): method -> column ("test_class", "gn1", "et1") ->
    (mean, std) of UA in %."""
    return {m: {c: (float(v[0]), float(v[1])) for c, v in cols.items()}
            for m, cols in results()["table2_cifar10"].items()}


def compare(summary: pd.DataFrame, dataset: str, scenario: str) -> pd.DataFrame:
    """Per method and metric: fvlib mean, paper mean, difference; Avg.Gap both recomputed."""
    paper = table1_means(dataset, scenario)
    ours = summary["mean"]
    rows = {}
    for m in ours.index:
        row = {}
        for k in metrics.METRICS:
            p = paper.loc[m, k] if m in paper.index else np.nan
            row[(k, "fvlib")], row[(k, "paper")] = round(ours.loc[m, k], 2), p
            row[(k, "Δ")] = round(ours.loc[m, k] - p, 2)
        if "retrain" in paper.index and m in paper.index:
            row[("Avg.Gap", "paper")] = round(metrics.avg_gap(paper.loc[m].to_dict(),
                                                              paper.loc["retrain"].to_dict()), 2)
        if ("gap", "Avg.Gap") in summary.columns:
            row[("Avg.Gap", "fvlib")] = round(summary.loc[m, ("gap", "Avg.Gap")], 2)
        rows[labels.method(m)] = row
    out = pd.DataFrame(rows).T
    out.columns = [f"{a} {b}" for a, b in out.columns]
    out.index.name = "method"
    return out
