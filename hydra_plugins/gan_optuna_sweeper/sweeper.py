"""Optuna's ask/tell loop as a Hydra sweeper.

Two ways to run a study. `workers=0`: each batch of `n_jobs` trials is asked from the study,
launched as Hydra jobs (any launcher: basic, joblib, SLURM), and told back once all have ended.
`workers=N`: this process and N-1 more (or any number started by hand or as a SLURM array, with
workers=1) each ask, run and tell their own trials one at a time, taking the study's lock to
count and ask (gan/sweeps/storages.py), until the study holds `n_trials`; a slot freed by a
short or pruned trial takes the next one at once. Either way a trial is told with the state its
job's own status.json records: `completed` with the objective, `pruned` or `stopped` (early, by
the health monitor) as PRUNED, `failed`/`diverged` (or no status) as FAIL; with user attributes
saying where its folder is, how it ended and its final scores (`trial_attributes`). Each job gets
`hydra.sweeper.trial=<id>`, so it can report its intermediate objective to its trial through the
study's storage and be pruned there (gan/sweeps/pruning.py).
Each trial records the sweeper's process, so that a sweep started again after a kill resolves the
trials its dead predecessor left RUNNING, and can retry them (`retries`, gan/sweeps/healing.py);
and a heartbeat, so that any sweeper of the study fails and retries a trial whose processes died
anywhere (gan/sweeps/heartbeats.py).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def shown_storage(url: str | None) -> str:
    from gan.sweeps.storages import shown

    return shown(url) if url else "memory"


def storage_error(exc: BaseException) -> bool:
    """An error of the study's storage going away: the database's driver, SQLAlchemy's, or the journal's file system."""
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, (SQLAlchemyError, OSError))


def resume_from(trial: optuna.Trial) -> tuple[str, ...]:
    """`ckpt_path=<folder>` for a retry of a trial that died (Optuna's retry callback's copy keeps
    the dead trial's user attribute run_folder) whose folder holds a readable checkpoint; else nothing."""
    from gan.run.checkpoints.files import readable_checkpoints
    from gan.sweeps.heartbeats import retried_from

    folder = trial.user_attrs.get("run_folder") if retried_from(trial) is not None else None
    if isinstance(folder, str) and Path(folder).is_dir() and readable_checkpoints(Path(folder) / "checkpoints"):
        log.info("Trial %d retries trial %d: it resumes from %s", trial.number, retried_from(trial), folder)
        return (f"ckpt_path={folder}",)
    return ()


def distribution(override: Override) -> BaseDistribution | str:
    """Hydra's sweep syntax as Optuna distributions, as Hydra's Optuna sweeper reads it: choice(...)
    and shuffled ranges are categorical, range(a, b, step) is stepped, interval(a, b) is uniform
    (tag(log, interval(...)) log-uniform), ints stay ints. A plain value is fixed."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep the Optuna sweeper understands")


def grid_values(name: str, d: BaseDistribution) -> list:
    """Every value of a discrete distribution, for GridSampler."""
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, (IntDistribution, FloatDistribution)) and d.step is not None and not d.log:
        count = int(round((d.high - d.low) / d.step)) + 1
        return [d.low + i * d.step for i in range(count)]
    raise ValueError(f"hydra.sweeper.params.{name}: GridSampler needs discrete values (choice or range), not {d}")


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """(the distributions, the fixed values) of `key=sweep` arguments; a later one of a key wins,
    so the command line replaces a config's dimension."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key, found = override.get_key_element(), distribution(override)
        space.pop(key, None)
        fixed.pop(key, None)
        (space if isinstance(found, BaseDistribution) else fixed)[key] = found
    return space, fixed


def job_state(ret: JobReturn) -> tuple[TrialState, list[float] | None, str, dict]:
    """What a finished job was, read from the status.json it wrote (gan/run/status.py): the trial's
    state, its values, a word for the log, and the status itself. A job stopped early (by the
    pruner, or by the health monitor) is PRUNED: its last value is not a finished trial's."""
    from gan.run.status import DamagedStatus, read_status, stopped_at

    folder = Path(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
    try:
        status = (read_status(folder) or {}) if folder is not None else {}
    except DamagedStatus as exc:  # a FAIL of this trial, not the end of the sweep
        return TrialState.FAIL, None, str(exc), {}
    word = status.get("status")
    if word in ("pruned", "stopped"):
        return TrialState.PRUNED, None, f"{stopped_at(status) or word}; status.json in {folder}", status
    if word != "completed":
        return TrialState.FAIL, None, word or "no status.json", status
    try:
        value = ret.return_value
    except Exception as exc:  # the job raised after writing its status
        return TrialState.FAIL, None, f"{type(exc).__name__}: {exc}", status
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not all(math.isfinite(v) for v in values):
        return TrialState.FAIL, None, f"objective {values}", status
    return TrialState.COMPLETE, values, word, status


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: Any, storage: str | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: DictConfig | None, trial: int | None = None,
                 retries: int = 0, workers: int = 0, heartbeat_interval: int = 30, heartbeat_grace: int = 120,
                 helper: bool = False):
        from gan.sweeps.pruning import make_pruner

        self.sampler, self.pruner = sampler, make_pruner(pruner)
        self.directions = list(direction) if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) \
            else [direction]
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = dict(params or {})
        self.retries, self.workers, self.helper = retries, workers, helper
        self.heartbeat_interval, self.heartbeat_grace = heartbeat_interval, heartbeat_grace
        self.untold: list[str] = []  # trials whose end the storage did not take
        self.lost: str | None = None  # why the storage stopped answering, when it did

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                               task_function=task_function)
        self.job_idx = 0

    @property
    def sweep_dir(self) -> Path:
        return Path(self.config.hydra.sweep.dir)

    def study(self) -> optuna.Study:
        from gan.sweeps.storages import open_storage
        from gan.sweeps.studies import readable_storage

        with readable_storage(self.storage):
            return optuna.create_study(study_name=self.study_name, storage=open_storage(self.storage), sampler=self.sampler,
                                       pruner=self.pruner if len(self.directions) == 1 else None,
                                       directions=[str(d) for d in self.directions], load_if_exists=True)

    def sweep(self, arguments: list[str]) -> None:
        from gan.sweeps.healing import heal
        from gan.sweeps.heartbeats import fail_stale
        from gan.sweeps.storages import check, reason_of, study_lock
        from gan.sweeps.studies import same_search_space

        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        self.check_settings()
        check(self.storage)  # a storage that cannot work is one paragraph before anything runs
        if isinstance(self.sampler, functools.partial):  # GridSampler (`_partial_: true`): its grid is the search space
            points = {name: grid_values(name, d) for name, d in space.items()}
            self.sampler = self.sampler(points)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in points.values()))
        with study_lock(self.storage, self.study_name):  # sweepers starting together create the study once
            study = self.study()
            same_search_space(study, space, self.storage)
        metrics = self.config.get("optimized_metric")
        names = [str(m) for m in ([metrics] if isinstance(metrics, str) else metrics or [])]
        if len(names) == len(self.directions) and study.metric_names != names:
            study.set_metric_names(names)  # optuna-dashboard's axes: metrics/fid, not "Objective 0"
        self.save_sweep()
        log.info("Study %s in %s: %d trials stored; sampler %s, pruner %s, directions %s%s", study.study_name,
                 shown_storage(self.storage), len(study.trials), type(self.sampler).__name__, type(self.pruner).__name__,
                 [str(d) for d in self.directions], f"; a worker of {self.n_trials} trials" if self.workers else "")
        with study_lock(self.storage, self.study_name):  # not while another sweeper is between an ask and its record
            heal(study, self.sweep_dir, self.retries)  # dead processes of this machine, at once
            fail_stale(study, self.heartbeat_grace, self.retries, self.sweep_dir)  # any machine's, by their heartbeats
        try:
            if self.workers:
                self.work(study, space, fixed)
            else:
                self.batches(study, space, fixed)
            self.save_results(study)
        except Exception as exc:
            if not self.untold and not storage_error(exc):
                raise
            self.lost = f"{type(exc).__name__}: {reason_of(exc, 200)}"
        if self.untold or self.lost:
            untold = f" It did not take the end of {len(self.untold)} trials: {'; '.join(self.untold)}." if self.untold else ""
            why = self.lost or "when trials were told"
            raise RuntimeError(f"The study's storage ({shown_storage(self.storage)}) stopped answering ({why}); this "
                               f"sweeper stopped asking.{untold} The trials' folders hold their results (status.json), "
                               f"which gan.report reads; run the command again once the storage is back.")

    def check_settings(self) -> None:
        if self.workers and not self.storage:
            raise ValueError("hydra.sweeper.workers needs hydra.sweeper.storage: the sweepers share the study through it")
        if self.workers < 0 or self.n_trials < 1 or self.heartbeat_interval < 1 or self.heartbeat_grace <= \
                self.heartbeat_interval:
            raise ValueError(f"hydra.sweeper: workers={self.workers} (0 or more), n_trials={self.n_trials} (1 or more), "
                             f"heartbeat_interval={self.heartbeat_interval} (1 s or more) and heartbeat_grace="
                             f"{self.heartbeat_grace} (more than the interval: a few missed beats)")

    def batches(self, study: optuna.Study, space: dict, fixed: dict) -> None:
        """Batches of n_jobs trials: asked together, launched together, told together."""
        from gan.sweeps.healing import record_sweeper
        from gan.sweeps.storages import study_lock

        to_go = self.n_trials
        while to_go > 0:
            batch = min(self.n_jobs, to_go)
            with study_lock(self.storage, study.study_name):  # each recorded as soon as it is asked
                trials = [record_sweeper(study, study.ask(space)) for _ in range(batch)]
            returns = self.launch(study, trials, fixed, self.job_idx)
            self.job_idx += len(returns)
            failures = sum(self.told(study, trial, ret) == TrialState.FAIL for trial, ret in zip(trials, returns))
            if failures / len(returns) > self.max_failure_rate:
                raise RuntimeError(f"{failures} of {len(returns)} trials failed, more than "
                                   f"hydra.sweeper.max_failure_rate={self.max_failure_rate}")
            to_go -= batch

    def work(self, study: optuna.Study, space: dict, fixed: dict) -> None:
        """One of several sweepers on the study: each asks, runs and tells its own trials, one at a
        time, until the study holds n_trials (counted under the study's lock, so the total is exact),
        then waits for the other sweepers' trials, failing and retrying those whose heartbeat stopped."""
        import time

        from gan.sweeps.healing import record_sweeper
        from gan.sweeps.heartbeats import beat, fail_stale
        from gan.sweeps.storages import study_lock
        from gan.sweeps.studies import counted_trials

        helpers = self.start_helpers()
        try:
            while True:
                with study_lock(self.storage, study.study_name):
                    fail_stale(study, self.heartbeat_grace, self.retries, self.sweep_dir)
                    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                    trial = None
                    if waiting or counted_trials(study) < self.n_trials:
                        study.sampler.reseed_rng()  # sweepers started together would draw the same seeded points
                        trial = record_sweeper(study, study.ask(space))
                        beat(study._storage, trial._trial_id)
                if trial is None:
                    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                        break
                    time.sleep(min(5, self.heartbeat_interval))  # others' trials are running: one may need a retry
                    continue
                [ret] = self.launch(study, [trial], fixed, trial.number)
                self.told(study, trial, ret)
        finally:
            self.wait_helpers(helpers)

    def start_helpers(self) -> list:
        """workers=N: N-1 more sweeper processes of this same command (hydra.sweeper.helper=true),
        beside this one, their console in <sweep>/worker_<i>.log; they die with this process."""
        import subprocess
        import sys

        from gan.processes import die_with_parent

        if self.workers <= 1 or self.helper:
            return []
        helpers = []
        for i in range(1, self.workers):
            out = open(self.sweep_dir / f"worker_{i}.log", "ab")  # the helper's console, open while it runs
            helpers.append((subprocess.Popen([sys.executable, *sys.argv, "hydra.sweeper.helper=true"], stdout=out,
                                             stderr=subprocess.STDOUT,
                                             preexec_fn=functools.partial(die_with_parent, os.getpid())), out))
        log.info("Started %d more sweeper processes (their consoles: %s/worker_*.log)", len(helpers), self.sweep_dir)
        return helpers

    def wait_helpers(self, helpers: list) -> None:
        for process, out in helpers:
            code = process.wait()
            out.close()
            if code:
                log.warning("Sweeper process %d ended with exit code %d (its console: %s)", process.pid, code, out.name)

    def launch(self, study: optuna.Study, trials: list, fixed: dict, job_idx: int) -> list[JobReturn]:
        """The trials' jobs, each with its params, its trial id and, for a retry of a trial that
        died, the dead trial's folder to resume from; a heartbeat on each while they run."""
        from contextlib import ExitStack

        from gan.sweeps.heartbeats import beating

        overrides = [tuple(f"{k}={v}" for k, v in {**trial.params, **fixed}.items())
                     + (f"hydra.sweeper.trial={trial._trial_id}",) + resume_from(trial) for trial in trials]
        with ExitStack() as stack:
            for trial in trials:
                stack.enter_context(beating(study._storage, trial._trial_id, self.heartbeat_interval))
            return list(self.launcher.launch(overrides, initial_job_idx=job_idx))

    def told(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> TrialState:
        """The trial told as its job ended (its status.json), with its folder, end and scores as user
        attributes; a storage that does not take it is said, and the sweep goes on."""
        from gan.sweeps.healing import tell
        from gan.sweeps.storages import reason_of
        from gan.sweeps.studies import trial_attributes

        state, values, what, status = job_state(ret)
        folder = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
        try:
            for key, value in trial_attributes(folder, status).items():
                trial.set_user_attr(key, value)
            tell(study, trial, values, state)
        except Exception as exc:  # the database went away: the job's folder keeps its result
            reason = reason_of(exc, 160)
            self.untold.append(f"trial {trial.number} {state.name}{f' {values}' if values else ''} in {folder} "
                               f"({type(exc).__name__}: {reason})")
            log.error("Trial %d could not be told to the study (%s); its folder %s holds its result", trial.number,
                      reason, folder)
            return state
        if state != TrialState.COMPLETE:
            log.warning("Trial %d: %s (%s)", trial.number, state.name, what)
        return state

    def save_sweep(self) -> None:
        """multirun.yaml, as Hydra's own sweeper writes it: the sweep's config and command line, which
        the jobs name their folders by (gan/run/names.py) and gan.report reads."""
        from gan.files import write_text

        write_text(Path(self.config.hydra.sweep.dir) / "multirun.yaml", OmegaConf.to_yaml(self.config))

    def save_results(self, study: optuna.Study) -> None:
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "trials": len(study.trials),
                                   "pruned": sum(t.state == TrialState.PRUNED for t in study.trials),
                                   "failed": sum(t.state == TrialState.FAIL for t in study.trials)}
        if done and len(self.directions) == 1:
            results.update(best_params=study.best_trial.params, best_value=study.best_value)
            log.info("Best value %s with %s", study.best_value, study.best_trial.params)
        elif done:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
            log.info("Pareto front: %d trials", len(study.best_trials))
        from gan.files import write_text

        write_text(Path(self.config.hydra.sweep.dir) / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)))
