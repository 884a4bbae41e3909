"""tools/gpu_run.sh: whatever ends the run, its processes (the papermill kernel too) are stopped
before the results are packed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# Stands in for python: `-m fvlib.run` starts a "kernel" in its own session (as jupyter_client
# does) and then blocks like a long notebook; `tools/bundle.py pack` notes whether that kernel is
# still alive; the import check passes; everything else is the real interpreter.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "fvlib.run" ]; then
  setsid bash -c 'echo $$ > kernel.pid.tmp; mv kernel.pid.tmp kernel.pid; exec sleep 120' &
  sleep 120
  exit 0
fi
if [ "$1" = "-c" ]; then  # the import check of papermill/ipykernel (3 s for nothing here)
  exit 0
fi
if [ "$1" = "tools/bundle.py" ] && [ "$2" = "pack" ]; then
  state=$(awk '{{print $3}}' "/proc/$(cat kernel.pid)/stat" 2>/dev/null)  # a zombie (Z) has exited
  if [ -n "$state" ] && [ "$state" != Z ]; then echo alive >> pack_saw; else echo gone >> pack_saw; fi
fi
exec {python} "$@"
"""


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by init, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists() or shutil.which("setsid") is None,
                    reason="needs Linux /proc and setsid (as on the GPU machines)")
def test_the_kernel_is_stopped_before_packing(tmp_path):
    (tmp_path / "tools").mkdir()
    for name in ("gpu_run.sh", "bundle.py"):
        shutil.copy(TOOLS / name, tmp_path / "tools" / name)
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(tmp_path / "out"), "PACK_THETA": "0",
           "BUDGET_S": "300", "RESERVE_S": "10"}
    proc = subprocess.Popen(["bash", "tools/gpu_run.sh", "smoke"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kernel = None
    try:
        for _ in range(300):  # the run has started its kernel
            if (tmp_path / "kernel.pid").exists():
                kernel = int((tmp_path / "kernel.pid").read_text())
                break
            time.sleep(0.1)
        assert kernel is not None and _alive(kernel)
        proc.send_signal(signal.SIGTERM)  # the device call's limit, as a budget-out would end it
        log = proc.communicate(timeout=30)[0]
        assert proc.returncode == 1 and "status=interrupted" in log, log
        assert (tmp_path / "pack_saw").read_text().split() == ["gone"], log
        assert not _alive(kernel)
        assert (tmp_path / "out" / "results.json").exists()
    finally:
        proc.kill()
        if kernel is not None and _alive(kernel):
            os.kill(kernel, signal.SIGKILL)
