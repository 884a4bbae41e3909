"""Headless runner: execute notebooks/NN_*.ipynb in order with papermill into runs/<profile>/.

Usage: python -m fvlib.run [PROFILE] [DATA_ROOT] [--only 00 02] [--timeout SECONDS] [-p NAME=VALUE ...]
                           [--ray [auto|ADDRESS]]
(the Makefile's `make run` calls this). `-p` sets a notebook parameter (a Python literal, else a
string) in every chosen notebook that declares it. `--ray` runs every study's units on Ray
(docs/cluster.md): a local instance started for the run, the cluster this machine belongs to (auto)
or a head node (HOST:PORT); the notebooks' kernels get it through the environment variable
FVLIB_EXECUTOR. A failing notebook stops the run with one line naming the notebook and the cell;
the executed copy in runs/<profile>/ holds the full traceback.

Checked before any kernel starts: every -p value against the type its notebooks declare (int,
float, bool, str, list; ints >= 0 unless the parameter's comment names a negative value, as
PGD_MAX_EVAL's "-1: all"; a list parameter also takes one bare item: SCENARIOS=classwise means
["classwise"]); no DATA_ROOT for the smoke profile (embedded digits); and with the environment
variable CI set, any profile but smoke is refused, since every notebook's setup cell then runs smoke.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from fvlib.config import PROFILE_NAMES, get_profile
from fvlib.paths import ROOT, resolve_data_root

NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "runs"


class NotebookFailed(RuntimeError):
    """A notebook stopped the run; str() is the one-line report."""


def notebooks(folder: Path | None = None) -> list[Path]:
    """Numbered notebooks in execution order."""
    return sorted((folder or NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))


def select(only: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """All notebooks, or those whose name starts with one of `only` (each prefix must match one)."""
    found = notebooks(folder)
    if not only:
        return found
    unknown = [o for o in only if not any(nb.name.startswith(o) for nb in found)]
    if unknown:
        raise ValueError(f"no notebook starts with {', '.join(unknown)}; notebooks: "
                         + ", ".join(nb.name for nb in found))
    return [nb for nb in found if any(nb.name.startswith(o) for o in only)]


def _last_started_cell(executed: Path) -> str:
    """'cell N `first line`' for the last code cell papermill started in the executed copy."""
    import nbformat
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # missing or half-written copy: nothing to point at
        return "cell unknown (no executed copy was written)"
    code = [c for c in nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]
    started = [i for i, c in enumerate(code) if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return "cell unknown (no cell was recorded as started in the executed copy)"
    lines = [line.strip() for line in code[started[-1]].source.splitlines() if line.strip()]
    return f"cell {started[-1] + 1} `{(lines or [''])[0][:60]}`"


def _describe(err: Exception) -> str:
    """One line for what went wrong: the notebook's exception, or papermill's/the kernel's."""
    import papermill as pm
    if isinstance(err, pm.PapermillExecutionError):
        name, text = err.ename, err.evalue
    elif type(err).__name__ == "DeadKernelError":  # nbclient's message is just "Kernel died"
        name, text = "DeadKernelError", "the kernel died (out of memory, a native crash or an exit)"
    else:  # CellTimeoutError, kernel start failures, ...
        name, text = type(err).__name__, str(err)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{name}: {first}" if first else name


def _execute(nb: Path, out: Path, params: dict, timeout: int | None, kernel: str) -> None:
    """Run one notebook into out; any failure becomes a one-line NotebookFailed."""
    import papermill as pm
    out.unlink(missing_ok=True)  # a stale copy would point the error at an old run's cell
    declared = pm.inspect_notebook(str(nb))  # pass only what the notebook declares
    params = {k: v for k, v in params.items() if k in declared}
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent),
                            kernel_name=kernel, execution_timeout=timeout or None, progress_bar=False)
    except Exception as err:  # PapermillExecutionError, DeadKernelError, timeouts, ...
        raise NotebookFailed(f"[fvlib.run] FAILED {nb.name}, {_last_started_cell(out)}: "
                             f"{_describe(err)} (executed copy: {out})") from err


def parse_param(text: str) -> tuple[str, object]:
    """'NAME=VALUE' -> (NAME, VALUE as a Python literal, else the string)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"notebook parameter {text!r} is not NAME=VALUE (e.g. -p DEV_TRIALS=3)")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _example(name: str, decl: dict) -> str:
    """'-p NAME=<the notebook's default>', quoted for the shell when needed."""
    text = f"{name}={decl.get('default', '')}"
    return f"-p '{text}'" if re.search(r"[\s\"'\[\]{}()]", text) else f"-p {text}"


def _bad_value(name: str, value: object, decl: dict, why: str) -> ValueError:
    """One error naming the parameter, its declared type and help, the value and an example."""
    shown = ("an empty value" if value == "" else f"the string {value!r}" if isinstance(value, str)
             else f"{type(value).__name__} {value!r}")
    return ValueError(f"-p {name}: {why}, got {shown} (the notebook declares {name}: "
                      f"{decl.get('inferred_type_name')} = {decl.get('default')}  # {decl.get('help', '')}); "
                      f"e.g. {_example(name, decl)}")


def _check_int(name: str, value: object, decl: dict) -> int:
    """An int (not a bool), >= 0 unless the parameter's comment names the negative value ('-1: all')."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_value(name, value, decl, f"{name} is declared int")
    allowed = {int(v) for v in re.findall(r"(?<![\w.])(-\d+)\s*:", decl.get("help") or "")}
    if value < 0 and value not in allowed:
        also = f" or one of {', '.join(map(str, sorted(allowed)))}" if allowed else ""
        raise _bad_value(name, value, decl, f"{name} must be >= 0{also} (a count, seed or size)")
    return value


def _check_list(name: str, value: object, decl: dict) -> list:
    """A list whose items have the type of the default's items; one bare item becomes [item]."""
    try:
        default = ast.literal_eval(decl.get("default") or "[]")
    except (ValueError, SyntaxError):
        default = []
    kinds = {type(v) for v in default} if isinstance(default, list) else set()
    item = kinds.pop() if len(kinds) == 1 else None
    if not isinstance(value, list):
        if item is not None and type(value) is item and value != "":
            return [value]
        raise _bad_value(name, value, decl, f"{name} is declared list")
    if item is not None and any(type(v) is not item for v in value):
        raise _bad_value(name, value, decl, f"{name} is declared list (of {item.__name__})")
    return value


def check_value(name: str, value: object, decl: dict) -> object:
    """value checked (and converted: int -> float, bare item -> [item]) against the notebook's
    declaration decl (papermill's inspect_notebook entry); ValueError saying what and how to fix."""
    kind = (decl.get("inferred_type_name") or "").split("[")[0].strip()
    if kind not in _TYPES:  # unannotated or an exotic annotation: passed as is
        return value
    if kind == "int":
        return _check_int(name, value, decl)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad_value(name, value, decl, f"{name} is declared float")
    if kind == "list":
        return _check_list(name, value, decl)
    if not isinstance(value, _TYPES[kind]):
        raise _bad_value(name, value, decl, f"{name} is declared {kind}")
    return value


def check_params(extra: dict, chosen: Sequence[Path]) -> dict:
    """extra checked against every chosen notebook that declares each name -> the checked values.

    ValueError for a name no chosen notebook declares (a typo would be ignored) or a value that
    does not fit its declared type."""
    import papermill as pm
    decls = [pm.inspect_notebook(str(nb)) for nb in chosen]
    declared = set().union(*decls)
    unknown = sorted(set(extra) - declared)
    if unknown:
        raise ValueError(f"no chosen notebook declares {', '.join(unknown)}; declared: "
                         + ", ".join(sorted(declared)))
    out = dict(extra)
    for decl in decls:
        for name in set(extra) & set(decl):
            out[name] = check_value(name, out[name], decl[name])
    return out


def _raw_params(texts: Sequence[str], chosen: Sequence[Path]) -> dict:
    """-p NAME=VALUE texts -> checked values; a str parameter takes VALUE as typed (`-p S=3` is '3')."""
    import papermill as pm
    str_params = {n for nb in chosen for n, d in pm.inspect_notebook(str(nb)).items()
                  if d.get("inferred_type_name") == "str"}
    extra = {}
    for text in texts:
        name, value = parse_param(text)
        raw = text.partition("=")[2]
        extra[name] = raw if name in str_params and not isinstance(value, str) else value
    return extra


def check_profile(profile: str, data_root: str | None) -> None:
    """Refuse what the notebooks would not run as asked: any profile but smoke under CI (their setup
    cell swaps in smoke), and a data root for the embedded digits (it would be ignored)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILE_NAMES)}")
    if os.environ.get("CI") and profile != "smoke":
        raise ValueError(f"CI is set, so every notebook's setup cell runs the smoke profile, not "
                         f"{profile!r}: the run would write smoke numbers under runs/{profile}/. Unset CI "
                         f"to run {profile!r} (env -u CI python -m fvlib.run {profile}), or run smoke.")
    if data_root and get_profile(profile).dataset == "digits":
        raise ValueError(f"profile {profile!r} uses the embedded digits data and takes no DATA_ROOT "
                         f"(got {data_root}); drop it, or choose a CIFAR-10 / ImageNet-10 profile.")


@contextlib.contextmanager
def kernel_environment() -> Iterator[dict]:
    """The environment the notebook kernels start with: on a machine without CUDA, the CPU pin of
    fvlib.runtime.cpu_pin_env (2 threads, AVX2 kernels: numbers compare across machines) unless
    FVLIB_CPU_PIN=0; this process's environment is restored afterwards. Yields what was set."""
    import torch
    from fvlib.runtime import cpu_pin_env, environment
    pin = {} if torch.cuda.is_available() or os.environ.get("FVLIB_CPU_PIN") == "0" else cpu_pin_env()
    with environment(**pin):
        yield pin


def run_all(profile: str = "smoke", data_root: str | None = None, timeout: int | None = 3600,
            only: Sequence[str] | None = None, folder: Path | None = None,
            out_dir: Path | None = None, kernel_name: str = "python3",
            extra: dict | None = None) -> list[dict]:
    """Execute the notebooks in order into out_dir (runs/<profile>/); returns their timings.

    extra: notebook parameters beyond PROFILE / DATA_ROOT, each passed to the notebooks declaring it."""
    check_profile(profile, data_root)  # check everything before the first kernel starts
    data_root = resolve_data_root(data_root)
    chosen = select(only, folder)
    extra = check_params(extra, chosen) if extra else {}
    out_dir = out_dir or RUNS / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**(extra or {}), "PROFILE": profile, "DATA_ROOT": data_root or "", "INTERACTIVE": False}
    done = []
    with kernel_environment() as pin:
        if pin:
            print(f"[fvlib.run] CPU run: kernels pinned to {pin['OMP_NUM_THREADS']} thread(s) and AVX2 "
                  "kernels so numbers compare across machines (FVLIB_CPU_THREADS=N, FVLIB_CPU_PIN=0)",
                  flush=True)
        for nb in chosen:
            start = time.perf_counter()
            print(f"[fvlib.run] {nb.name} (profile={profile})", flush=True)
            _execute(nb, out_dir / nb.name, params, timeout, kernel_name)
            done.append({"notebook": nb.name, "seconds": round(time.perf_counter() - start, 1)})
            print(f"[fvlib.run] {nb.name} done in {done[-1]['seconds']} s", flush=True)
    return done


def _parser() -> argparse.ArgumentParser:
    """The command line of `python -m fvlib.run`."""
    p = argparse.ArgumentParser(prog="python -m fvlib.run", description=__doc__.split("\n\n")[0])
    p.add_argument("profile", nargs="?", default="smoke", choices=PROFILE_NAMES,
                   help="configuration profile (default: smoke)")
    p.add_argument("data_root", nargs="?", default=None,
                   help="dataset archive or folder, relative to the current folder "
                        "(default: search data/ and ../shared/data)")
    p.add_argument("--data-root", dest="data_root_flag", metavar="DATA_ROOT",
                   help="same as the DATA_ROOT argument")
    p.add_argument("--only", nargs="+", metavar="NN",
                   help="run only notebooks whose name starts with these prefixes, e.g. --only 00 02")
    p.add_argument("--timeout", type=int, default=3600, metavar="SECONDS",
                   help="limit per notebook cell (default 3600; 0 = no limit)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter (Python literal or string), checked against the type the "
                        "notebook declares; e.g. -p DEV_TRIALS=3, -p SCENARIOS=classwise; repeatable")
    p.add_argument("--ray", nargs="?", const="local", metavar="auto|ADDRESS",
                   help="run every study's units on Ray: a local instance for this run (no value), the "
                        "cluster this machine belongs to (auto) or a head node (HOST:PORT)")
    p.epilog = ("With CI set in the environment only the smoke profile runs (every notebook's setup "
                "cell swaps in smoke under CI); unset CI to run another profile.")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line (exit 2 on a bad profile, data root or prefix)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.data_root and args.data_root_flag and args.data_root != args.data_root_flag:
        parser.error("DATA_ROOT given twice (argument and --data-root) with different values")
    try:
        args.data_root = resolve_data_root(args.data_root_flag or args.data_root)
        check_profile(args.profile, args.data_root)
        chosen = select(args.only)
        args.extra = _raw_params(args.param, chosen)
        if {"PROFILE", "DATA_ROOT"} & set(args.extra):
            raise ValueError("set PROFILE and DATA_ROOT as arguments, not with -p")
        if args.extra:
            args.extra = check_params(args.extra, chosen)
        if args.ray is not None and importlib.util.find_spec("ray") is None:
            from fvlib.executor import INSTALL_HINT
            raise ValueError(f"--ray needs Ray, which is not installed. {INSTALL_HINT}")
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the notebooks, then build the reproduction report; 1 (one line on stderr) on a failure."""
    args = parse_args(argv)
    from fvlib.executor import session
    try:
        with session(args.ray):  # the notebooks' kernels inherit FVLIB_EXECUTOR
            timings = run_all(args.profile, args.data_root, args.timeout, args.only, extra=args.extra)
    except NotebookFailed as err:
        print(err, file=sys.stderr)
        return 1
    from fvlib.report import build
    print(f"[fvlib.run] report: {build(args.profile, timings)}")
    print(f"[fvlib.run] all {len(timings)} notebooks done in "
          f"{sum(t['seconds'] for t in timings):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
