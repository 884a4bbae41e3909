"""The sandbox's own checks can fail: a Ray-named process left in this namespace is found and killed."""
from __future__ import annotations

import subprocess
import time

import pytest

from sandbox import LeftRunning, ray_processes, ray_sandbox


def test_a_leftover_ray_process_fails_the_sandbox_and_is_killed():
    with pytest.raises(LeftRunning, match="ray::planted"):
        with ray_sandbox(timeout=1.0) as temp_dir:
            # a stand-in for a leaked worker: retitled like Ray's workers, in this namespace
            proc = subprocess.Popen(["bash", "-c", "exec -a ray::planted sleep 300"])
            deadline = time.monotonic() + 10
            while proc.pid not in ray_processes(temp_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.pid in ray_processes(temp_dir)
    assert proc.wait(timeout=10) == -9  # killed by the sandbox, not left running
