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
    """Trials the study holds so far; 0 when its file or the study does not exist yet, or the
    storage cannot be read (the sweeper says why in one paragraph when it opens it)."""
    from gan.sweeps.storages import local_file, open_storage

    local = local_file(storage)
    if local is not None and not local.exists():
        return 0  # opening it would create it
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials)
    except KeyError:  # no study of that name in this storage
        return 0
    except Exception:  # unreadable or unreachable: said by the sweeper before any trial runs
        return 0


SPACE = "gan:search_space"  # the study's system attribute: the search space its first sweep searched


def same_search_space(study, space: dict, storage: str | None) -> None:
    """A study is searched over one space: the first sweep records it, and a sweep over another
    space under the same study name is refused before any trial runs (its trials would not compare)."""
    import json

    from optuna.distributions import distribution_to_json

    from gan.sweeps.storages import shown

    ours = {key: json.loads(distribution_to_json(d)) for key, d in sorted(space.items())}
    recorded = study._storage.get_study_system_attrs(study._study_id).get(SPACE)
    if recorded is None:
        study._storage.set_study_system_attr(study._study_id, SPACE, ours)
        return
    if recorded != ours:
        differ = sorted(k for k in set(recorded) | set(ours) if recorded.get(k) != ours.get(k))
        raise UserError(f"hydra.sweeper.study_name={study.study_name} in {shown(storage or 'memory')} was searched over "
                        f"another space: {', '.join(differ)} differ ({'; '.join(described(k, recorded, ours) for k in differ)})."
                        f" Give this sweep its own study_name, or the study's own space.")


def described(key: str, recorded: dict, ours: dict) -> str:
    def one(entry):
        if entry is None:
            return "absent"
        attributes = entry.get("attributes", {})
        return str(attributes.get("choices") or {k: v for k, v in attributes.items() if v is not None})

    return f"{key}: stored {one(recorded.get(key))}, now {one(ours.get(key))}"


def counted_trials(study) -> int:
    """The trials that count toward a shared study's n_trials: all but the failed ones that a retry
    stands in for (Optuna's retry callback's record)."""
    from gan.sweeps.heartbeats import retried_from

    trials = study.get_trials(deepcopy=False)
    replaced = {retried_from(t) for t in trials}
    return sum(1 for t in trials if t.number not in replaced)


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
