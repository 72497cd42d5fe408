"""`status.json`: what became of a run (running, completed, stopped, diverged, failed,
interrupted), written by the job and read by `gan.report`. Kept free of torch and Lightning so
that reading a sweep stays light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"


def write_status(run_dir: str | Path, **status: Any) -> None:
    path = Path(run_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(status, indent=1, default=str) + "\n")


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status, or {} when it never wrote one."""
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else {}
