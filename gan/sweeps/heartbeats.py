"""Trials whose processes die are not lost, on any storage and any machine.

While a trial runs, its sweeper (for the whole launch) and its job (from its start) each record a
heartbeat on the trial every `hydra.sweeper.heartbeat_interval` seconds: the time, as the trial's
system attribute `gan:heartbeat`, which every storage keeps (SQLite, a database server, the journal).
A sweeper that shares the study looks, before each trial it asks for, for RUNNING trials whose
last heartbeat is older than `heartbeat_grace` seconds: their processes were killed, their node
lost, their job preempted without a requeue. Such a trial becomes what its job's status.json says
it finished as (the job ended, only its sweeper died), else FAIL (its status.json `interrupted`,
as healing leaves a dead job's), and a FAIL is retried (up to `retries` times) with Optuna's
retry callback: the same parameters, as a WAITING trial the next `ask` takes, which resumes from
the failed trial's last checkpoint when it has one.
A beat that cannot be written (the database went away) is warned about once; the trial goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

HEARTBEAT = "gan:heartbeat"  # the trial's system attribute: the time of its last heartbeat (seconds since the epoch)


def beat(storage: Any, trial_id: int) -> None:
    storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())


@contextmanager
def beating(storage: Any, trial_id: int, interval: float) -> Iterator[None]:
    """A heartbeat on `trial_id` now and every `interval` seconds until the block ends (a thread)."""
    stop = threading.Event()

    def loop() -> None:
        warned = False
        while not stop.wait(interval):
            try:
                beat(storage, trial_id)
            except Exception as exc:  # the storage went away: the trial goes on, its folder keeps its result
                if not warned:
                    log.warning("The heartbeat of trial id %d could not be recorded (%s: %s); training goes on.",
                                trial_id, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                    warned = True

    try:
        beat(storage, trial_id)
    except Exception as exc:
        log.warning("The heartbeat of trial id %d could not be recorded (%s); training goes on.", trial_id, type(exc).__name__)
    thread = threading.Thread(target=loop, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def last_beat(trial: FrozenTrial) -> float | None:
    value = trial.system_attrs.get(HEARTBEAT)
    return float(value) if isinstance(value, (int, float)) else None


def fail_stale(study: optuna.Study, grace: float, retries: int, sweep_dir: Path | None = None) -> list[int]:
    """Resolve the RUNNING trials whose heartbeat stopped more than `grace` seconds ago (the module's
    docstring); their numbers. Trials that never beat (started by an older version) are left to healing."""
    from gan.sweeps.healing import finished_as, interrupted, job_folder, job_folders, job_status, tell
    from gan.sweeps.studies import trial_attributes

    now, resolved = time.time(), []
    folders = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beaten = last_beat(trial)
        if beaten is None or now - beaten <= grace:
            continue
        if folders is None:
            folders = job_folders(sweep_dir) if sweep_dir is not None else {}
        folder = run_folder(trial) or job_folder(folders.get(trial._trial_id, []), trial)
        status = job_status(folder)
        outcome = finished_as(status, len(study.directions))
        state, values = outcome or (TrialState.FAIL, None)
        lost = outcome is None and folder is not None and status.get("status", "running") == "running"
        recorded = {**status, "status": "interrupted"} if lost else status
        for key, value in trial_attributes(None if folder is None else str(folder), recorded).items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
        try:
            tell(study, trial.number, values, state)
        except (ValueError, RuntimeError):  # another sweeper resolved it first
            continue
        if lost:  # its folder says how it ended, as the job would have had it seen its end
            interrupted(folder, status, f"by its heartbeat, silent for {now - beaten:.0f} s")
        resolved.append(trial.number)
        retried = state == TrialState.FAIL and retries > 0 and retry_failed(study, trial.number, retries)
        log.warning("Trial %d: no heartbeat for %.0f s (its processes are gone): now %s%s; folder %s", trial.number,
                    now - beaten, state.name, ", retried" if retried else "", folder or "none")
    return resolved


def retry_failed(study: optuna.Study, number: int, retries: int) -> bool:
    """Optuna's RetryHeartbeatStaleTrialCallback (RetryFailedTrialCallback until Optuna 4.9) on the
    FAIL trial `number`: a WAITING copy of its params (and its run folder, for the checkpoint)
    unless its chain of retries has reached `retries`."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=retries, inherit_intermediate_values=True)
    retry(study, study.trials[number])
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) > before


def run_folder(trial: FrozenTrial) -> Path | None:
    """The folder the trial's job recorded when it started (user attribute run_folder), if it exists."""
    folder = trial.user_attrs.get("run_folder")
    return Path(folder) if isinstance(folder, str) and Path(folder).is_dir() else None


def retried_from(trial: FrozenTrial | optuna.Trial) -> int | None:
    """The number of the failed trial this one retries (Optuna's retry callback's record), else None."""
    system = trial.system_attrs if isinstance(trial, FrozenTrial) else trial.study._storage.get_trial_system_attrs(
        trial._trial_id)
    history = system.get("retry_history")
    return int(history[-1]) if isinstance(history, list) and history else None
