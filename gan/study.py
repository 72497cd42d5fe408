"""Optuna studies that continue (`hparams_search=` configs; Hydra's Optuna sweeper runs them).

The sweeper stores the study (`storage: sqlite:///outputs/optuna/<study>/optuna.db`) and loads
it again when the same command runs again; each invocation adds `n_trials` trials. Two things
make that a continuation rather than a replay: the sampler's seed is offset by the number of
trials already stored (`${study_seed:...}`), so its random start-up trials are new points; and
new job folders are numbered after the stored ones (`${free_job_dir:...}` in gan/rundir.py).

Versions: the released sweeper pins optuna<3, and optuna 2.10 cannot open SQLite storage with
SQLAlchemy 2; pyproject.toml pins SQLAlchemy<2, with which it can (tests/test_sweeps.py).
"""

from __future__ import annotations

import os
from pathlib import Path

# SQLAlchemy 1.4 prints a notice about 2.0 when optuna loads; the pin to <2 is deliberate (above).
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")


def stored_trials(storage: str, study_name: str) -> int:
    """Trials the study holds so far; 0 when its SQLite file or the study does not exist yet."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return 0  # opening it would create it
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no study of that name in this storage
        return 0


def study_seed(seed: int, study_name: str, storage: str | None) -> int:
    return int(seed) + (stored_trials(storage, study_name) if storage else 0)
