"""Project hygiene: notebooks committed without outputs, one literal parameters cell, env files agree."""
from __future__ import annotations

import ast
import json
import re
import tomllib

import pytest

from fvlib.paths import ROOT
from fvlib.run import notebooks

NOTEBOOKS = notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_setup_and_data.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_one_literal_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    for node in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(node, ast.AnnAssign) and node.target.id.isupper()
        ast.literal_eval(node.value)  # plain literals only
    names = [node.target.id for node in ast.parse("".join(tagged[0]["source"])).body]
    import papermill as pm  # papermill's own parser, which `make run` uses to pass parameters
    assert list(pm.inspect_notebook(str(path))) == names, "a comment papermill cannot parse hides a parameter"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    src = "\n".join("".join(c["source"]) for c in code)
    assert not re.search(r"^\s*(def|class) ", src, re.M), "notebooks define no functions or classes"


def _names(specs):
    return {re.split(r"[<>=!\s\[]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = py["optional-dependencies"]
    assert {"dev", "ray"} <= set(extras)
    wanted = _names(py["dependencies"] + [spec for specs in extras.values() for spec in specs])
    env = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    listed = _names(re.findall(r"^\s+- ([A-Za-z][\w.-]*[^\n:]*)$", env, re.M)) - {"python", "pip"}
    listed = {"torch" if n == "pytorch" else n for n in listed}
    assert listed == wanted, (listed ^ wanted)


def test_make_install_installs_every_extra():
    """`make test` on a clean clone has Ray (the Ray tests need it) and the dev tools."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = re.findall(r'pip install[^\n]*-e "\.\[([\w,]+)\]"', (ROOT / "Makefile").read_text())
    assert installs and set(installs[0].split(",")) == set(extras)


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
