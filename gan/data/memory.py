"""How much memory this process may still take, for `data.in_memory=auto`: the least of what
the machine has available, what its cgroup (a container, a SLURM job) allows, and the process's
own limits (`ulimit -d`, `ulimit -v`)."""

from __future__ import annotations

import resource
from pathlib import Path


def _kib(path: str, field: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _rlimit_headroom(kind: int, used_field: str) -> int | None:
    soft, _ = resource.getrlimit(kind)
    used = _kib("/proc/self/status", used_field)
    return None if soft == resource.RLIM_INFINITY or used is None else soft - used


def available_memory() -> int | None:
    """Bytes this process can still allocate (None: unknown, not Linux)."""
    found = [_kib("/proc/meminfo", "MemAvailable"), _cgroup_headroom(),
             _rlimit_headroom(resource.RLIMIT_DATA, "VmData"), _rlimit_headroom(resource.RLIMIT_AS, "VmSize")]
    known = [n for n in found if n is not None]
    return min(known) if known else None
