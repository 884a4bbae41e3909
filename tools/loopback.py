#!/usr/bin/env python3
"""Run a command in a network namespace of its own that holds only loopback (the Ray tests' sandbox).

Usage: python tools/loopback.py CMD [ARG ...]      (e.g. `make test-cluster`)

Ray binds its nodes to the machine's interface address even when told `--node-ip-address=127.0.0.1`
(measured with Ray 2.60), so a test cluster would talk over the real network. Inside a fresh
network namespace the only interface is `lo`: every connection Ray makes stays on this machine.
This script makes one and then replaces itself by CMD (exec), so CMD's exit status is the result:

  * as root: unshare(CLONE_NEWNET), the same as `unshare -n`;
  * otherwise: unshare(CLONE_NEWUSER | CLONE_NEWNET) with the caller mapped to root inside, the
    same as `unshare -rn` (needs unprivileged user namespaces, on by default in most distributions);

then brings `lo` up with the SIOCSIFFLAGS ioctl (the same as `ip link set lo up`; no iproute2
needed). If neither works, CMD still runs, outside any namespace, with FVLIB_LOOPBACK_ERROR saying
why: the Ray tests check where they run and fail with that reason, so nothing is skipped silently
and no Ray process starts on a real network. Only the standard library is used (no fvlib import).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
ERROR_VAR = "FVLIB_LOOPBACK_ERROR"


def _unshare(flags: int) -> None:
    """unshare(2) of the calling (single-threaded) process; OSError on failure."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _map_to_root(uid: int, gid: int) -> None:
    """Map the caller's uid/gid to 0 inside a new user namespace (what `unshare -r` writes)."""
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
    except FileNotFoundError:  # kernels before 3.19 have no setgroups file
        pass
    for name, outer in (("uid_map", uid), ("gid_map", gid)):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(f"0 {outer} 1")


def _loopback_up() -> None:
    """Set IFF_UP on `lo` (struct ifreq: 16-byte name, 16-bit flags, padding to 40 bytes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    """Names of the network interfaces this process sees (its namespace's, unlike /sys/class/net)."""
    return sorted(name for _i, name in socket.if_nameindex())


def enter() -> str | None:
    """Move this process into a new loopback-only network namespace; None, or why it failed."""
    reasons = []
    uid, gid = os.getuid(), os.getgid()
    for how, flags in (("unshare -n (as root)", CLONE_NEWNET),
                       ("unshare -rn (user namespace)", CLONE_NEWUSER | CLONE_NEWNET)):
        try:
            _unshare(flags)
            if flags & CLONE_NEWUSER:
                _map_to_root(uid, gid)
            _loopback_up()
        except OSError as err:
            reasons.append(f"{how}: {err.strerror or err}")
            continue
        if interfaces() == ["lo"]:
            return None
        reasons.append(f"{how}: the new namespace still shows {interfaces()}")
    return "; ".join(reasons)


def main(argv: list[str]) -> None:
    """Enter the namespace (or record why not), then exec argv."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.exit(__doc__)
    why = enter()
    if why is None:
        os.environ.pop(ERROR_VAR, None)
    else:
        os.environ[ERROR_VAR] = f"no loopback-only network namespace could be made ({why})"
        print(f"tools/loopback.py: {os.environ[ERROR_VAR]}; running {argv[0]} without one",
              file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
