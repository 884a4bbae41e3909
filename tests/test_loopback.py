"""tools/loopback.py, the Ray tests' sandbox launcher, when no namespace can be made: the command
still runs (its exit status passes through) and learns why, so the Ray tests fail with the reason.
(Where namespaces can be made, `make test-cluster` exercises the real path: its tests check it.)"""
from __future__ import annotations

import subprocess
import sys

from fvlib.paths import ROOT

CHILD = "import os, sys; print(os.environ.get('FVLIB_LOOPBACK_ERROR')); sys.exit(7)"
NO_NAMESPACES = f"""
import sys
sys.path.insert(0, {str(ROOT / 'tools')!r})
import loopback
def refuse(flags):
    raise PermissionError(1, "Operation not permitted")
loopback._unshare = refuse
loopback.main([sys.executable, "-c", {CHILD!r}])
"""


def test_without_namespaces_the_command_runs_and_is_told_why():
    out = subprocess.run([sys.executable, "-c", NO_NAMESPACES], capture_output=True, text=True, timeout=60)
    assert out.returncode == 7  # exec: the command's own status
    why = ("no loopback-only network namespace could be made (unshare -n (as root): Operation not "
           "permitted; unshare -rn (user namespace): Operation not permitted)")
    assert out.stdout.strip() == why
    assert why in out.stderr and "running" in out.stderr


def test_usage_without_a_command():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "loopback.py")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "Usage: python tools/loopback.py CMD" in out.stderr
