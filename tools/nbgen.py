"""Write a notebook from a list of (kind, source) cells: outputs empty, kernelspec normalised.

Used by maintainers to (re)create notebooks/NN_*.ipynb; the first code cell is tagged 'parameters'.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def cell(kind: str, source: str, tags: list[str] | None = None) -> dict:
    """One nbformat-4 cell with no outputs."""
    c = {"cell_type": kind, "metadata": {"tags": tags} if tags else {},
         "source": source.strip("\n").splitlines(keepends=True)}
    if kind == "code":
        c.update(execution_count=None, outputs=[])
    return c


def write(path: Path, cells: list[tuple[str, str]]) -> None:
    """Write cells; the first code cell gets the papermill 'parameters' tag."""
    out, tagged = [], False
    for kind, src in cells:
        tags = None
        if kind == "code" and not tagged:
            tags, tagged = ["parameters"], True
        out.append(cell(kind, src, tags))
    nb = {"cells": out, "metadata": {"kernelspec": KERNELSPEC,
                                     "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"c{i:02d}"
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def parse(text: str) -> list[tuple[str, str]]:
    """Cells from a plain script: '# %% [markdown]' / '# %%' separators (jupytext percent style)."""
    cells, kind, buf = [], None, []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind:
                cells.append((kind, "\n".join(buf)))
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            buf.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            buf.append(line)
    if kind:
        cells.append((kind, "\n".join(buf)))
    return cells


if __name__ == "__main__":
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    write(dst, parse(src.read_text()))
