"""`status.json`: what became of a run (running, completed, stopped, pruned, diverged, failed,
interrupted), written by the job and read by `gan.report`. Kept free of torch and Lightning so
that reading a sweep stays light."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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


def write_status(run_dir: str | Path, **status: Any) -> None:
    path = Path(run_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_standard(status), indent=1, default=str, allow_nan=False) + "\n")


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status, or {} when it never wrote one; "NaN" and "Infinity" read back as numbers."""
    path = Path(run_dir) / STATUS_FILE
    return _numbers(json.loads(path.read_text())) if path.exists() else {}
