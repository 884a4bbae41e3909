"""Figures and tables with provenance: figures/<profile>/<name>.{png,pdf,json} (+ csv/md/tex)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

from fvlib.cache import atomic_write, write_json
from fvlib.paths import figures_dir


def style() -> None:
    """One place for rcParams; call once per notebook."""
    matplotlib.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    })


def save(fig: plt.Figure, name: str, profile: str, numbers: Any, provenance: dict) -> dict[str, Path]:
    """Write <name>.png, .pdf and a .json sidecar (plotted numbers + provenance), atomically."""
    out = figures_dir(profile)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "pdf", "json")}
    for ext in ("png", "pdf"):
        atomic_write(paths[ext], lambda p, e=ext: fig.savefig(p, format=e))
    write_json(paths["json"], {"name": name, "profile": profile, "numbers": numbers, "provenance": provenance})
    return paths


def save_table(frame, name: str, profile: str, numbers: Any, provenance: dict,
               latex: bool = True) -> dict[str, Path]:
    """Write a pandas table as CSV + Markdown (+ LaTeX) + a JSON sidecar (numbers + provenance)."""
    out = figures_dir(profile)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "json": out / f"{name}.json"}
    atomic_write(paths["csv"], lambda p: frame.to_csv(p))
    atomic_write(paths["md"], lambda p: p.write_text(markdown(frame.reset_index().to_dict("records")) + "\n"))
    if latex:
        paths["tex"] = out / f"{name}.tex"
        atomic_write(paths["tex"], lambda p: p.write_text(_latex(frame)))
    write_json(paths["json"], {"name": name, "profile": profile,
                               "table": frame.reset_index().to_dict(orient="records"),
                               "numbers": numbers, "provenance": provenance})
    return paths


def markdown(rows: list[dict]) -> str:
    """A Markdown table of records (list of dicts; columns from the first), without 'tabulate'."""
    if not rows:
        return "_empty_"
    cols = list(rows[0])
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _latex(frame) -> str:
    """A plain tabular (no jinja2 dependency of DataFrame.to_latex)."""
    df = frame.reset_index()
    esc = lambda s: str(s).replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$")  # noqa: E731
    lines = [r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\hline",
             " & ".join(esc(c) for c in df.columns) + r" \\", r"\hline"]
    lines += [" & ".join(esc(v) for v in r) + r" \\" for r in df.itertuples(index=False)]
    return "\n".join(lines + [r"\hline", r"\end{tabular}", ""])
