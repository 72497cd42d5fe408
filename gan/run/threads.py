"""CPU threads of a run (`threads=auto`): the cores shared among the runs on this machine.

torch starts one OpenMP thread per core in every process, so two runs on a 2-core machine run
four spinning threads on two cores, and both slow down several times over (docs/2026-11-28-speed.md).
With `threads=auto` each run takes `cores // runs` threads, where `runs` is
the number of runs of this project alive on the machine when it starts (each registers in a
per-machine folder while it runs), and at least the parallel jobs of its own Hydra launcher
(joblib's n_jobs) or of its sweep's sweeper processes here (`hydra.sweeper.workers`). The count
is fixed for the run's life: a run's numbers depend on its thread count (reductions split
differently), so changing it mid-run would make them depend on what else ran. status.json
records it; `threads=N` reproduces a run bit for bit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gan.config.hydra_runtime import launcher
from gan.processes import HOST, running

REGISTRY = Path(tempfile.gettempdir()) / f"gan-runs-{os.getuid()}"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def registered() -> Iterator[None]:
    """This process counts as a running run inside the block."""
    REGISTRY.mkdir(parents=True, exist_ok=True)
    me = REGISTRY / str(os.getpid())
    me.touch()
    try:
        yield
    finally:
        me.unlink(missing_ok=True)


def live_runs() -> int:
    """Registered runs whose process is alive (a killed run's entry is removed here)."""
    alive = 0
    for entry in REGISTRY.glob("[0-9]*"):
        if running({"host": HOST, "pid": int(entry.name)}):
            alive += 1
        else:
            entry.unlink(missing_ok=True)
    return alive


def launcher_jobs() -> int:
    """How many jobs run at once here: the Hydra launcher's (joblib's n_jobs; -1 is all cores), or
    an Optuna sweep's sweeper processes on this machine (`hydra.sweeper.workers`), which start
    their jobs a moment apart and would otherwise count each other too late."""
    from gan.config.hydra_runtime import sweeper

    n_jobs = launcher().get("n_jobs")
    jobs = 1 if not n_jobs else n_jobs if n_jobs > 0 else max(1, cores() + 1 + n_jobs)
    workers = sweeper().get("workers") or 0
    return max(jobs, workers if isinstance(workers, int) else 0)


def auto_threads() -> int:
    """Threads for a run starting now (call it inside `registered()`)."""
    return max(1, cores() // max(live_runs(), launcher_jobs(), 1))
