"""Where the Ray tests may run (a loopback-only network namespace) and how they prove they left no
Ray process behind. Imported by conftest.py and by the tests of these checks themselves."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from fvlib.runtime import environment

HOW = ("run them in a network namespace that holds only loopback: `make test-cluster`, or "
       "`python tools/loopback.py python -m pytest tests/cluster` (as root, or with unprivileged "
       "user namespaces enabled)")
# Command lines of a Ray instance's processes: its services, and workers/agents (retitled "ray::...").
RAY_PROCESS = re.compile(r"raylet|gcs_server|ray::|default_worker\.py|dashboard|log_monitor\.py|"
                         r"autoscaler/_private/monitor\.py|runtime_env|ray_client_server")
ENV = {"RAY_USAGE_STATS_ENABLED": "0",  # no usage report (it could not leave the namespace anyway)
       "RAY_AUTH_MODE": "disabled"}     # no token written to ~/.ray: nothing outside lo can connect


def loopback_problem() -> str | None:
    """None if this process sees only the `lo` interface and can connect over it; else why not."""
    names = sorted(name for _i, name in socket.if_nameindex())
    if names != ["lo"]:
        why = os.environ.get("FVLIB_LOOPBACK_ERROR")
        said = f" tools/loopback.py said: {why}." if why else ""
        return (f"the Ray tests refuse to run on a real network: this process sees the interfaces "
                f"{names}.{said} Ray binds to the machine's address even when told 127.0.0.1, so {HOW}.")
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            socket.create_connection(srv.getsockname(), timeout=5).close()
    except OSError as err:
        return f"loopback does not work in this namespace ({err}); {HOW}."
    return None


def _netns(pid: int | str) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/net")
    return None


def _live_cmdline(entry: Path) -> str:
    """A process's command line ('' for a zombie or a process that is gone)."""
    with contextlib.suppress(OSError):
        if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def ray_processes(temp_dir: str) -> dict[int, str]:
    """{pid: command line} of live Ray processes of this test run: those naming temp_dir, and Ray
    processes in this network namespace (one of its own, so only this run's processes are in it)."""
    mine, found = _netns("self"), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmd = _live_cmdline(entry)
        if cmd and (temp_dir in cmd or (RAY_PROCESS.search(cmd) and _netns(entry.name) == mine)):
            found[int(entry.name)] = cmd[:160]
    return found


def reap(temp_dir: str, timeout: float = 30.0) -> dict[int, str]:
    """Wait for this run's Ray processes to exit; SIGKILL (by pid) and return those that did not."""
    deadline = time.monotonic() + timeout
    while (left := ray_processes(temp_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


class LeftRunning(AssertionError):
    """Ray processes outlived their instance's shutdown."""


@contextlib.contextmanager
def ray_sandbox(timeout: float = 30.0) -> Iterator[str]:
    """A short private RAY_TMPDIR (Unix socket paths are limited to 107 bytes) and Ray's test env;
    on exit: raise LeftRunning if a Ray process of this sandbox is still alive `timeout` seconds
    after the block (it is then killed), and delete the folder."""
    temp_dir = tempfile.mkdtemp(prefix="fvray-", dir="/tmp")
    try:
        with environment(**ENV, RAY_TMPDIR=temp_dir):
            yield temp_dir
    finally:
        left = reap(temp_dir, timeout)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if left:
            raise LeftRunning("Ray left processes running after shutdown (now killed): "
                              + "; ".join(f"{pid} {cmd}" for pid, cmd in left.items()))
