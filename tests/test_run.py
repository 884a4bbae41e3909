"""The headless runner's CLI: checks before any kernel starts, one-line failures naming notebook and cell."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from fvlib import run
from fvlib.config import PROFILE_NAMES


def make_notebook(path: Path, *cells: str) -> Path:
    """A notebook with a papermill `parameters` cell followed by the given code cells."""
    params = new_code_cell('PROFILE: str = "smoke"\nDATA_ROOT: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params] + [new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Temp notebooks/ and runs/ for fvlib.run, and a working folder that is neither."""
    (tmp_path / "nbs").mkdir()
    make_notebook(tmp_path / "nbs" / "01_fail.ipynb", "x = 1", 'raise ValueError(f"boom {DATA_ROOT}")')
    make_notebook(tmp_path / "nbs" / "02_dead.ipynb", "x = 1", "import os\nos._exit(1)", "y = 2")
    monkeypatch.setattr(run, "NOTEBOOKS", tmp_path / "nbs")
    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.delenv("CI", raising=False)  # CI=1 (make test) would refuse every profile but smoke
    (tmp_path / "work" / "mydata").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run.main(argv)
    return info.value.code


def test_help_exits_0_and_creates_nothing(project, capsys):
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--only" in out and "--timeout" in out and all(p in out for p in PROFILE_NAMES)
    assert not (project / "runs").exists()


def test_unknown_profile_exits_2_with_the_valid_names_and_creates_nothing(project, capsys):
    assert _exit_code(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and all(p in err for p in PROFILE_NAMES)
    assert not (project / "runs").exists()
    with pytest.raises(ValueError, match="unknown profile"):
        run.run_all("bogus")
    assert not (project / "runs").exists()


def test_entry_point_rejects_an_unknown_profile_before_starting(tmp_path):
    env = {**os.environ, "FVLIB_ROOT": str(tmp_path)}  # runs/ would appear under tmp_path
    done = subprocess.run([sys.executable, "-m", "fvlib.run", "bogus"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice: 'bogus'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_relative_data_root_is_resolved_against_the_callers_folder(project):
    expected = str(project / "work" / "mydata")
    assert run.parse_args(["quick", "mydata"]).data_root == expected
    assert run.parse_args(["quick", "--data-root", "mydata"]).data_root == expected
    assert run.parse_args(["quick", ""]).data_root is None  # `make run DATA_ROOT=` passes nothing


def test_missing_data_root_or_prefix_exits_2_before_starting(project, capsys):
    assert _exit_code(["smoke", "nowhere"]) == 2
    assert str(project / "work" / "nowhere") in capsys.readouterr().err
    assert _exit_code(["smoke", "--only", "99"]) == 2
    assert "01_fail.ipynb" in capsys.readouterr().err
    assert not (project / "runs").exists()


def test_a_kernel_that_cannot_start_is_one_line_too(project):
    with pytest.raises(run.NotebookFailed) as info:
        run.run_all(only=["01"], kernel_name="no-such-kernel")
    msg = str(info.value)
    assert "\n" not in msg and "01_fail.ipynb" in msg and "cell unknown" in msg
    assert "NoSuchKernel" in msg


def _failure_line(capfd) -> str:
    """The runner's one stderr line; the 30-line traceback must not be there."""
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "FAILED" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_failing_cell_is_named_with_notebook_cell_and_error(project, capfd):
    assert run.main(["quick", "mydata", "--only", "01"]) == 1
    line = _failure_line(capfd)
    assert "01_fail.ipynb, cell 3 `raise ValueError" in line
    assert f"ValueError: boom {project / 'work' / 'mydata'}" in line  # absolute, seen by the kernel
    assert str(project / "runs" / "quick" / "01_fail.ipynb") in line


def test_dead_kernel_is_named_with_notebook_and_last_started_cell(project, capfd):
    assert run.main(["smoke", "--only", "02"]) == 1
    line = _failure_line(capfd)
    assert "02_dead.ipynb, cell 3 `import os`" in line and "DeadKernelError" in line


def test_notebook_parameters_from_the_command_line(project, capfd):
    nb = make_notebook(project / "nbs" / "03_param.ipynb", 'raise ValueError(f"N is {N!r}, S is {S!r}")')
    book = nbformat.read(nb, as_version=4)
    book.cells[0].source += '\nN: list = [0]  # numbers\nS: str = "a"  # a name'
    nbformat.write(book, nb)
    assert run.parse_param("N=[1, 2]") == ("N", [1, 2]) and run.parse_param("S=cat") == ("S", "cat")
    assert run.main(["smoke", "--only", "03", "-p", "N=[1, 2]", "-p", "S=cat"]) == 1
    assert "N is [1, 2], S is 'cat'" in capfd.readouterr().err
    # a typo, a malformed pair or PROFILE via -p stop before any kernel starts
    for bad, says in ((["-p", "M=3"], "no chosen notebook declares M"), (["-p", "N3"], "not NAME=VALUE"),
                      (["-p", "PROFILE=quick"], "not with -p")):
        assert _exit_code(["smoke", "--only", "03", *bad]) == 2
        assert says in capfd.readouterr().err


def _typed_notebook(project: Path) -> Path:
    """A notebook declaring typed parameters like the real ones (papermill reports the annotations)."""
    nb = make_notebook(project / "nbs" / "04_typed.ipynb", "x = 1")
    book = nbformat.read(nb, as_version=4)
    book.cells[0].source += (
        '\nSEED: int = 0  # global seed'
        '\nTRIALS: int = 0  # 0: number of trials of the profile'
        '\nPGD_MAX_EVAL: int = 0  # images attacked; 0: cap of the profile, -1: all'
        '\nSCENARIOS: list = ["classwise", "random"]  # forgetting scenarios to run'
        '\nWEIGHT: float = 0.5  # a weight'
        '\nINTERACTIVE: bool = True  # sliders')
    nbformat.write(book, nb)
    return nb


@pytest.mark.parametrize("bad, says", [
    ("SEED=1 2", "SEED is declared int"),
    ('SEED="3"', "SEED is declared int"),
    ("SEED=", "empty"),
    ("SEED=3=4", "SEED is declared int"),
    ("SEED=True", "SEED is declared int"),
    ("SEED=-2", "SEED must be >= 0"),
    ("TRIALS=-1", "TRIALS must be >= 0"),
    ("PGD_MAX_EVAL=-2", "PGD_MAX_EVAL must be >= 0 or one of -1"),
    ("SCENARIOS=3", "SCENARIOS is declared list"),
    ("SCENARIOS=[1, 2]", "SCENARIOS is declared list"),
    ("WEIGHT=abc", "WEIGHT is declared float"),
    ("INTERACTIVE=1", "INTERACTIVE is declared bool"),
])
def test_parameter_values_are_checked_against_the_declared_type_before_any_kernel(project, capfd, bad, says):
    _typed_notebook(project)
    assert _exit_code(["quick", "--only", "04", "-p", bad]) == 2
    err = capfd.readouterr().err
    name = bad.partition("=")[0]
    assert says in err and "e.g. -p" in err and name in err, err
    assert not (project / "runs").exists()
    with pytest.raises(ValueError, match=says.split(" is ")[0]):  # the API checks values too
        run.run_all("quick", only=["04"], extra={name: run.parse_param(bad)[1]})


def test_well_typed_values_pass_and_a_bare_word_is_a_one_item_list(project):
    _typed_notebook(project)
    args = run.parse_args(["quick", "--only", "04", "-p", "SCENARIOS=classwise", "-p", "SEED=3",
                           "-p", "PGD_MAX_EVAL=-1", "-p", "WEIGHT=1", "-p", "INTERACTIVE=False",
                           "-p", "TRIALS=2"])
    assert args.extra == {"SCENARIOS": ["classwise"], "SEED": 3, "PGD_MAX_EVAL": -1, "WEIGHT": 1.0,
                          "INTERACTIVE": False, "TRIALS": 2}
    assert run.parse_args(["quick", "--only", "01"]).extra == {}


def test_ci_refuses_a_profile_the_notebooks_would_swap_for_smoke(project, monkeypatch, capfd):
    monkeypatch.setenv("CI", "1")
    assert _exit_code(["paper", "--only", "01"]) == 2
    err = capfd.readouterr().err
    assert "CI is set" in err and "smoke" in err and "Unset CI" in err
    with pytest.raises(ValueError, match="CI is set"):
        run.run_all("paper", only=["01"])
    assert not (project / "runs").exists()
    assert run.parse_args(["smoke", "--only", "01"]).profile == "smoke"  # smoke itself is fine


def test_a_data_root_for_the_embedded_digits_is_refused(project, capfd):
    assert _exit_code(["smoke", "mydata", "--only", "01"]) == 2
    assert "takes no DATA_ROOT" in capfd.readouterr().err
    assert not (project / "runs").exists()


def test_cpu_kernels_are_pinned_and_the_runner_environment_restored(project, monkeypatch, capfd):
    """Thread count and instruction set change CPU numbers: kernels start pinned (not on CUDA)."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("FVLIB_CPU_PIN", raising=False)
    monkeypatch.setenv("FVLIB_CPU_THREADS", "3")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    make_notebook(project / "nbs" / "05_env.ipynb", "import os\nkeys = ('OMP_NUM_THREADS', "
                  "'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_CBWR')\n"
                  "raise ValueError(' '.join(os.environ.get(k, '-') for k in keys))")
    assert run.main(["quick", "--only", "05"]) == 1
    out = capfd.readouterr()
    assert "ValueError: 3 avx2 AVX2 AVX2" in out.err and "pinned to 3 thread(s)" in out.out
    assert "ATEN_CPU_CAPABILITY" not in os.environ  # only the kernels' environment
    monkeypatch.setenv("FVLIB_CPU_PIN", "0")
    assert run.main(["quick", "--only", "05"]) == 1
    assert "ValueError: " in (err := capfd.readouterr().err) and " avx2 " not in err
def test_ray_reaches_every_notebook_kernel_through_the_environment(project, capfd, monkeypatch):
    """--ray ADDRESS: the kernels inherit FVLIB_EXECUTOR, which their setup call reads (no Ray is
    started for an address; `--ray` alone starts a local instance: tests/cluster)."""
    pytest.importorskip("ray")
    monkeypatch.delenv("FVLIB_EXECUTOR", raising=False)
    make_notebook(project / "nbs" / "03_env.ipynb", 'import os\nraise ValueError(os.environ["FVLIB_EXECUTOR"])')
    assert run.parse_args(["smoke", "--ray"]).ray == "local" and run.parse_args(["smoke"]).ray is None
    assert run.main(["smoke", "--only", "03", "--ray", "10.1.2.3:6379"]) == 1
    assert "ValueError: ray:10.1.2.3:6379" in capfd.readouterr().err
    assert "FVLIB_EXECUTOR" not in os.environ  # set for the run only
