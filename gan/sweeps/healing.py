"""Sweeps heal: a trial left RUNNING by a sweep that was killed (kill -9, a lost node, a power cut)
is resolved when the sweep starts again, so the study and the job folders never say `running` for
a process that is gone.

The sweeper records its own process on every trial it asks (`gan:sweeper`, an identity of
gan/processes.py), and each job records its process in its status.json. A RUNNING trial whose
sweeper and job are both gone becomes what its status.json says the job finished as (the sweeper
died between the job's end and its tell), or FAIL, with a `running` status.json rewritten as
`interrupted`. Trials of processes on another machine are left alone: they cannot be asked from here.
`retries` runs the params of a trial healed to FAIL again (Optuna's retry callback, as for a trial
whose heartbeat stopped: gan/sweeps/heartbeats.py), from its folder's last checkpoint when it has one.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gan.config.untrusted import read_yaml
from gan.errors import UserError
from gan.processes import identity, running
from gan.run.folders import job_order
from gan.run.status import DamagedStatus, read_status, write_status
from gan.sweeps.heartbeats import retry_failed
from gan.sweeps.studies import trial_attributes

log = logging.getLogger(__name__)

SWEEPER = "gan:sweeper"  # the system attribute that names the sweeper process of a trial
TRIAL_OVERRIDE = "hydra.sweeper.trial="


def record_sweeper(study: optuna.Study, trial: optuna.Trial) -> optuna.Trial:
    """At ask time: this process is the one that will tell `trial`, so that a later sweep can see it gone."""
    study._storage.set_trial_system_attr(trial._trial_id, SWEEPER, identity())
    return trial


def trial_id_of(folder: Path) -> int | None:
    """The Optuna trial id a job folder ran for: Hydra keeps `hydra.sweeper.trial=<id>` among the
    hydra overrides in .hydra/hydra.yaml (read as plain data: nothing in it is resolved)."""
    try:
        config = read_yaml(folder / ".hydra" / "hydra.yaml")
    except UserError:  # none yet (the sweeper died as the job started), or damaged
        return None
    overrides = (((config or {}).get("hydra") or {}).get("overrides") or {}).get("hydra") if isinstance(config, dict) else None
    for override in overrides if isinstance(overrides, list) else []:
        if isinstance(override, str) and override.startswith(TRIAL_OVERRIDE) and override[len(TRIAL_OVERRIDE):].isdigit():
            return int(override[len(TRIAL_OVERRIDE):])
    return None


def job_folders(sweep_dir: Path) -> dict[int, list[Path]]:
    """Trial id -> the job folders of the sweep that ran for it, in the order they were numbered."""
    found: dict[int, list[Path]] = {}
    for folder in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=job_order) if sweep_dir.is_dir() else []:
        trial_id = trial_id_of(folder)
        if trial_id is not None:
            found.setdefault(trial_id, []).append(folder)
    return found


def job_status(folder: Path | None, quiet: bool = False) -> dict[str, Any]:
    """The job's status.json; {} when there is none, or when it is damaged (the job is as good as unheard of)."""
    if folder is None:
        return {}
    try:
        return read_status(folder)
    except DamagedStatus as exc:
        if not quiet:
            log.warning("%s", exc)
        return {}


def job_folder(candidates: list[Path], trial: FrozenTrial) -> Path | None:
    """The trial's folder: the newest one naming its id whose job did not end before the trial
    began (a study whose database was deleted and started again reuses the ids of old folders)."""
    began = trial.datetime_start.timestamp() if trial.datetime_start else -math.inf
    fresh = [f for f in candidates if not job_status(f, quiet=True).get("ended", math.inf) < began]
    return fresh[-1] if fresh else None


def finished_as(status: dict[str, Any], n_values: int) -> tuple[TrialState, list[float] | None] | None:
    """What a job that finished told its status.json, as the sweeper would have told the study;
    None when it did not finish with a usable outcome."""
    if status.get("status") in ("pruned", "stopped"):  # stopped early: not a finished trial's value
        return TrialState.PRUNED, None
    if status.get("status") != "completed":
        return None
    value = status.get("objective")
    values = value if isinstance(value, list) else [value]
    if len(values) != n_values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    return TrialState.COMPLETE, [float(v) for v in values]


def named(who: Any) -> str:
    """A process identity as a log line names it."""
    return f"pid {who.get('pid')} on {who.get('host')}" if isinstance(who, dict) else "not recorded"


def whereabouts(trial: FrozenTrial, status: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the trial's processes may still run (True), are gone (False), or cannot be asked
    (None: one is on another machine), and which they are. A job that wrote an end to its
    status.json is not running, whatever its process does next (a joblib worker lives on)."""
    sweeper = trial.system_attrs.get(SWEEPER)
    job = status.get("process") if status.get("status") == "running" else None
    states = [running(sweeper), running(job) if job is not None else False]
    words = f"sweeper {named(sweeper)}, job {named(job) if job is not None else status.get('status', 'without status')}"
    return (None if None in states else any(states)), words


def interrupted(folder: Path, status: dict[str, Any], found: str = "when the sweep started again") -> None:
    """status.json as the job would have left it had it seen its end: `interrupted`, with its old
    fields and the process it named (not this one)."""
    process = status.get("process")
    write_status(folder, **{**status, "status": "interrupted", "process": process,
                            "error": f"its process ({named(process)}) is gone (found {found})"})


def tell(study: optuna.Study, trial: FrozenTrial | optuna.Trial | int, values: list[float] | None, state: TrialState) -> None:
    """study.tell, where GridSampler's stop at its last point (an error outside optimize) is no error: the trial is stored."""
    try:
        study.tell(trial, values=values, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def heal_trial(study: optuna.Study, trial: FrozenTrial, folder: Path | None, retries: int) -> None:
    """One RUNNING trial: left as it is while a process of it may run, else told what became of it."""
    status = job_status(folder)
    alive, words = whereabouts(trial, status)
    if alive is None:
        log.warning("Trial %d is RUNNING in processes on another machine (%s): left as it is", trial.number, words)
        return
    if alive:
        log.info("Trial %d is still running (%s): left as it is", trial.number, words)
        return
    outcome = finished_as(status, len(study.directions))
    state, values = outcome or (TrialState.FAIL, None)
    lost = outcome is None and folder is not None and status.get("status", "running") == "running"
    recorded = {**status, "status": "interrupted"} if lost else status
    for key, value in trial_attributes(None if folder is None else str(folder.resolve()), recorded).items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    tell(study, trial.number, values, state)
    if lost:
        interrupted(folder, status)
    again = state == TrialState.FAIL and retries > 0 and retry_failed(study, trial.number, retries)
    log.warning("Trial %d was left RUNNING by processes now gone (%s): now %s%s; folder %s", trial.number, words, state.name,
                ", retried" if again else "", folder or "none")


def heal(study: optuna.Study, sweep_dir: Path, retries: int = 0) -> None:
    """Resolves every RUNNING trial of `study` whose processes are gone (see the module's docstring)."""
    stuck = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not stuck:
        return
    folders = job_folders(sweep_dir)
    for trial in stuck:
        heal_trial(study, trial, job_folder(folders.get(trial._trial_id, []), trial), retries)
