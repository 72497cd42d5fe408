"""Optuna's ask/tell loop as a Hydra sweeper.

Each batch of `n_jobs` trials is asked from the study, launched as Hydra jobs (any launcher:
basic, joblib, SLURM), and told back with the state the job's own status.json records:
`completed` with the objective, `pruned` or `stopped` (early, by the health monitor) as PRUNED,
`failed`/`diverged` (or no status) as FAIL; with user attributes saying where its folder is, how
it ended and its final scores (`trial_attributes`). Each job gets `hydra.sweeper.trial=<id>`, so it can report its intermediate
objective to its trial through the study's storage and be pruned there (gan/sweeps/pruning.py).
Each trial records the sweeper's process, so that a sweep started again after a kill resolves the
trials its dead predecessor left RUNNING, and can retry them (`retries`, gan/sweeps/healing.py).
"""

from __future__ import annotations

import functools
import logging
import math
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
                 retries: int = 0):
        from gan.sweeps.pruning import make_pruner

        self.sampler, self.pruner = sampler, make_pruner(pruner)
        self.directions = list(direction) if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) \
            else [direction]
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = dict(params or {})
        self.retries = retries

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                               task_function=task_function)
        self.job_idx = 0

    def study(self) -> optuna.Study:
        from gan.sweeps.studies import readable_storage

        with readable_storage(self.storage):
            return optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                       pruner=self.pruner if len(self.directions) == 1 else None,
                                       directions=[str(d) for d in self.directions], load_if_exists=True)

    def sweep(self, arguments: list[str]) -> None:
        from gan.sweeps.healing import heal, record_sweeper, tell
        from gan.sweeps.studies import trial_attributes

        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        if isinstance(self.sampler, functools.partial):  # GridSampler (`_partial_: true`): its grid is the search space
            points = {name: grid_values(name, d) for name, d in space.items()}
            self.sampler = self.sampler(points)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in points.values()))
        study = self.study()
        metrics = self.config.get("optimized_metric")
        names = [str(m) for m in ([metrics] if isinstance(metrics, str) else metrics or [])]
        if len(names) == len(self.directions):
            study.set_metric_names(names)  # optuna-dashboard's axes: metrics/fid, not "Objective 0"
        self.save_sweep()
        log.info("Study %s in %s: %d trials stored; sampler %s, pruner %s, directions %s", study.study_name,
                 self.storage, len(study.trials), type(self.sampler).__name__, type(self.pruner).__name__,
                 [str(d) for d in self.directions])
        heal(study, Path(self.config.hydra.sweep.dir), self.retries)
        to_go = self.n_trials
        while to_go > 0:
            batch = min(self.n_jobs, to_go)
            trials = [record_sweeper(study, study.ask(space)) for _ in range(batch)]  # each as soon as it is asked
            overrides = [tuple(f"{k}={v}" for k, v in {**trial.params, **fixed}.items())
                         + (f"hydra.sweeper.trial={trial._trial_id}",) for trial in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = 0
            for trial, ret in zip(trials, returns):
                state, values, what, status = job_state(ret)
                folder = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
                for key, value in trial_attributes(folder, status).items():
                    trial.set_user_attr(key, value)
                tell(study, trial, values, state)
                failures += state == TrialState.FAIL
                if state != TrialState.COMPLETE:
                    log.warning("Trial %d: %s (%s)", trial.number, state.name, what)
            if failures / len(returns) > self.max_failure_rate:
                raise RuntimeError(f"{failures} of {len(returns)} trials failed, more than "
                                   f"hydra.sweeper.max_failure_rate={self.max_failure_rate}")
            to_go -= batch
        self.save_results(study)

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
