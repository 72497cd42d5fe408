"""Which process is which, and helpers that die with their parent.

A process is named by its host, PID and start time (the start time tells a PID reused by the
kernel from the process that held it first), so that a lock or a sweep trial left by a process
that was killed can be recognised as left, and taken over."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

HOST = socket.gethostname()
PR_SET_PDEATHSIG = 1


def started(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (None: not Linux, or no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in parentheses may hold spaces


def identity(pid: int | None = None) -> dict:
    """{"host", "pid", "pid_started"} of this process (or of `pid` on this machine)."""
    pid = os.getpid() if pid is None else pid
    return {"host": HOST, "pid": pid, "pid_started": started(pid)}


def running(who: dict) -> bool | None:
    """Whether the process `who` names (an `identity`) still runs; None when it is on another
    machine, which cannot be asked from here."""
    if not isinstance(who, dict) or not isinstance(who.get("pid"), int):
        return False
    if who.get("host") != HOST:
        return None
    try:
        os.kill(who["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    now = started(who["pid"])
    return now is None or who.get("pid_started") in (None, now)


def die_with_parent(parent: int) -> None:
    """In a helper process (a decode worker): the kernel kills it when `parent` ends, however it
    ends (kill -9 included), so it never outlives the run and holds nothing of it. Linux only;
    elsewhere the helper's own watchdog (DataLoader's) is all there is."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above: nothing would signal us
        os._exit(1)
