"""Optuna studies that continue (`hparams_search=` configs; the project's sweeper,
hydra_plugins/gan_optuna_sweeper, runs them).

The sweeper stores the study (`storage: sqlite:///outputs/optuna/<study>/optuna.db`) and loads
it again when the same command runs again; each invocation adds `n_trials` trials. Two things
make that a continuation rather than a replay: the sampler's seed is offset by the number of
trials already stored (`${study_seed:...}`), so its random start-up trials are new points; and
new job folders are numbered after the stored ones (`${free_job_dir:...}` in gan/run/folders.py).
A study whose last invocation was killed continues too: the trials it left RUNNING are resolved
first (gan/sweeps/healing.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gan.errors import UserError


@contextmanager
def readable_storage(storage: str | None) -> Iterator[None]:
    """A study database that cannot be read (truncated, overwritten, not a database) is one
    paragraph naming it, not SQLAlchemy's traceback."""
    from sqlalchemy.exc import DatabaseError

    try:
        yield
    except DatabaseError as exc:
        why = str(getattr(exc, "orig", exc) or exc).splitlines()[0][:200]
        raise UserError(f"hydra.sweeper.storage={storage}: the study's database cannot be read ({why}). Move it aside "
                        f"to start the study afresh (its job folders stay for gan.report), or restore it.") from None


def stored_trials(storage: str, study_name: str) -> int:
    """Trials the study holds so far; 0 when its SQLite file or the study does not exist yet."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return 0  # opening it would create it
    import optuna
    from sqlalchemy.exc import DatabaseError

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no study of that name in this storage
        return 0
    except DatabaseError:  # unreadable: the sweeper refuses it in one paragraph when it opens the study
        return 0


def study_seed(seed: int, study_name: str, storage: str | None) -> int:
    return int(seed) + (stored_trials(storage, study_name) if storage else 0)


def trial_attributes(folder: str | None, status: dict) -> dict[str, Any]:
    """What optuna-dashboard shows of a trial beside its parameters: its run folder, how it ended
    (and what stopped it early, at which iteration), its final scores."""
    attrs: dict[str, Any] = {"run_folder": folder, "status": status.get("status", "no status.json")}
    stop = status.get("stop")
    if isinstance(stop, dict):
        attrs.update(stopped_at=stop.get("iteration"), stop_reason=stop.get("reason"), stop_rule=stop.get("rule"))
    if status.get("max_steps"):
        attrs["max_steps"] = status["max_steps"]
    if status.get("metrics_protocol"):
        attrs["metrics_protocol"] = status["metrics_protocol"]
    if status.get("error"):
        attrs["error"] = str(status["error"])[:500]
    for key, value in (status.get("metrics") or {}).items():
        if key.startswith(("metrics/", "loss/")) and isinstance(value, (int, float)) and math.isfinite(value):
            attrs[key] = value
    return attrs
