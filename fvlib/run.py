"""Headless runner: execute notebooks/NN_*.ipynb in order with papermill into runs/<profile>/.

Usage: python -m fvlib.run [PROFILE] [DATA_ROOT]   (the Makefile's `make run` calls this)
A failing notebook stops the run with its name and the failing cell.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from fvlib.paths import ROOT


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """Numbered notebooks in execution order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_all(profile: str = "smoke", data_root: str | None = None, timeout: int = 3600,
            only: list[str] | None = None) -> list[dict]:
    """Execute every notebook (or those whose name starts with one of `only`); returns timings."""
    import papermill as pm
    out_dir = ROOT / "runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, "DATA_ROOT": data_root or "", "INTERACTIVE": False}
    done = []
    for nb in notebooks():
        if only and not any(nb.name.startswith(o) for o in only):
            continue
        start = time.perf_counter()
        print(f"[fvlib.run] {nb.name} (profile={profile})", flush=True)
        declared = pm.inspect_notebook(str(nb))  # pass only what the notebook declares
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name),
                                parameters={k: v for k, v in params.items() if k in declared},
                                cwd=str(nb.parent), kernel_name="python3",
                                execution_timeout=timeout, progress_bar=False)
        except pm.PapermillExecutionError as err:
            raise SystemExit(f"[fvlib.run] FAILED in {nb.name}, cell {err.exec_count}: "
                             f"{err.ename}: {err.evalue}\n(executed copy: {out_dir / nb.name})")
        done.append({"notebook": nb.name, "seconds": round(time.perf_counter() - start, 1)})
        print(f"[fvlib.run] {nb.name} done in {done[-1]['seconds']} s", flush=True)
    return done


if __name__ == "__main__":
    args = sys.argv[1:]
    name = args[0] if args else "smoke"
    timings = run_all(name, args[1] if len(args) > 1 and args[1] else None)
    from fvlib.report import build
    print(f"[fvlib.run] report: {build(name, timings)}")
    print(f"[fvlib.run] all {len(timings)} notebooks done in "
          f"{sum(t['seconds'] for t in timings):.0f} s")
