"""`status.json`: what became of a run (running, completed, stopped, pruned, diverged, failed,
interrupted), written by the job and read by `gan.report`. Kept free of torch and Lightning so
that reading a sweep stays light."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gan.files import write_text
from gan.processes import identity

STATUS_FILE = "status.json"


NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _standard(value: Any) -> Any:
    """Standard JSON has no NaN or Infinity: such numbers are written as those strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _standard(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # several objectives
        return [_standard(v) for v in value]
    return value


def _numbers(value: Any) -> Any:
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


class DamagedStatus(ValueError):
    """A status.json that is not the JSON object this project writes (truncated by an older
    version, edited by hand, damaged on disk)."""


def write_status(run_dir: str | Path, **status: Any) -> None:
    """Whole or not at all (gan/files.py); with the process that wrote it, so that a sweep started
    again can tell a `running` job whose process is gone (gan/processes.py)."""
    status = {"process": identity(), **status}  # `process=` given: a status written on a job's behalf
    write_text(Path(run_dir) / STATUS_FILE, json.dumps(_standard(status), indent=1, default=str, allow_nan=False) + "\n")


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status, or {} when it never wrote one; "NaN" and "Infinity" read back as numbers.
    A damaged file raises DamagedStatus naming it and what is wrong."""
    path = Path(run_dir) / STATUS_FILE
    if not path.exists():
        return {}
    try:
        status = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise DamagedStatus(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(status, dict) or not isinstance(status.get("status"), str):
        raise DamagedStatus(f"{path}: not a run's status (no `status` in it)")
    return _numbers(status)


def stopped_at(status: dict[str, Any]) -> str:
    """`stopped at 300/600: mode collapse: ...` from a status.json's `stop` (what ended the run early); "" without one."""
    stop = status.get("stop")
    if not isinstance(stop, dict):
        return ""
    of = f"/{status['max_steps']}" if status.get("max_steps") else ""
    return f"{status.get('status', 'stopped')} at {stop.get('iteration')}{of}: {stop.get('reason') or stop.get('rule', '')}"
