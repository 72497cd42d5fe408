"""Pruning for the jobs of an Optuna sweep (hydra_plugins/gan_optuna_sweeper): each job reports
its `optimized_metric` to its own trial, through the study's storage, every time the metric is
logged; when the study's pruner (`hydra.sweeper.pruner`) says the trial is hopeless, training
stops there as if it had reached its end: last.ckpt and the curves are kept, status.json says
`pruned`, and the sweeper records the trial as PRUNED. Trials running on other machines (joblib,
SLURM) reach the same storage, so the pruner compares each trial with all the others. Every job of
the sweeper also records its folder on its trial and beats its heartbeat (`TrialLink`). A storage
that stops answering costs the job nothing: it trains on, unpruned."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gan.config.hydra_runtime import sweeper

log = logging.getLogger(__name__)

# hydra.sweeper.pruner by name; a `_target_` node instead gives any Optuna pruner with its arguments.
PRUNERS = {
    "median": ("optuna.pruners.MedianPruner", {"n_startup_trials": 3}),  # below the median of earlier trials at that step
    "successive_halving": ("optuna.pruners.SuccessiveHalvingPruner", {}),  # asynchronous successive halving
    "hyperband": ("optuna.pruners.HyperbandPruner", {}),  # several successive-halving brackets
}


def make_pruner(spec):
    """An Optuna pruner from `hydra.sweeper.pruner`: a name of PRUNERS, a `_target_` node (or the
    object Hydra built from one), or null/none for no pruning."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        if spec not in PRUNERS:
            raise ValueError(f"hydra.sweeper.pruner={spec}: choose one of {', '.join(PRUNERS)}, none, "
                             f"or a node with the _target_ of an optuna.pruners class")
        target, kwargs = PRUNERS[spec]
        return instantiate({"_target_": target, **kwargs})
    return instantiate(spec) if isinstance(spec, (dict, DictConfig)) else spec


class PruneTrial(pl.Callback):
    """Reports `metric` at every `every_n_steps` iteration to Optuna trial `trial_id` of the
    study, and stops training when the trial should be pruned."""

    def __init__(self, metric: str, every_n_steps: int, storage: str, study_name: str, trial_id: int, pruner):
        self.metric, self.every_n_steps = metric, every_n_steps
        self.where, self.trial_id, self.pruner = (storage, study_name), trial_id, pruner
        self.trial = None
        self.stop: dict | None = None  # {"rule": "pruner", "reason", "iteration"} once it pruned

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self.trial is None:
            import optuna

            from gan.sweeps.storages import open_storage

            storage, study_name = self.where
            try:
                study = optuna.load_study(study_name=study_name, storage=open_storage(storage), pruner=make_pruner(self.pruner))
                self.trial = optuna.trial.Trial(study, self.trial_id)
            except Exception as exc:  # the storage is gone: the trial trains to its end, unpruned
                self.unreachable(exc)

    def unreachable(self, exc: Exception) -> None:
        if self.trial is not False:
            log.warning("The study's storage does not answer (%s: %s): this trial trains on without pruning.",
                        type(exc).__name__, " ".join(str(exc).split())[:200])
        self.trial = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if (step % self.every_n_steps or self.metric not in trainer.callback_metrics or self.stop is not None
                or step >= trainer.max_steps):  # a trial at its end has finished, whatever the pruner says
            return
        prune = None
        if trainer.is_global_zero and self.trial:
            try:
                self.trial.report(float(trainer.callback_metrics[self.metric]), step)
                prune = self.trial.should_prune()
            except Exception as exc:
                self.unreachable(exc)
        if trainer.strategy.broadcast(prune, src=0):  # every process stops at the same iteration
            value = float(trainer.callback_metrics[self.metric])
            pruner = self.pruner if isinstance(self.pruner, str) else "study's"
            reason = f"{self.metric} {value:.4g} is worse than the {pruner} pruner allows at this iteration"
            self.stop = {"rule": "pruner", "reason": reason, "iteration": step}
            trainer.should_stop = True
            log.warning("Pruned at iteration %d: %s.", step, reason)


class TrialLink(pl.Callback):
    """A sweep's job and its Optuna trial: the job's folder as the trial's user attribute
    run_folder from the start (a retry of a trial that dies resumes from it), and a heartbeat from
    setup to teardown (gan/sweeps/heartbeats.py), so a job that runs elsewhere than its sweeper
    (SLURM, joblib) is seen alive, and dead when its node is lost."""

    def __init__(self, storage: str, trial_id: int, interval: float, run_dir: str):
        self.storage, self.trial_id, self.interval, self.run_dir = storage, trial_id, interval, run_dir
        self.heartbeat = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from pathlib import Path

        from gan.sweeps.heartbeats import beating
        from gan.sweeps.storages import open_storage

        if not trainer.is_global_zero or self.heartbeat is not None:
            return
        try:
            storage = open_storage(self.storage)
            storage.set_trial_user_attr(self.trial_id, "run_folder", str(Path(self.run_dir).resolve()))
        except Exception as exc:  # the storage is gone: the job trains on, its folder keeps its result
            log.warning("The study's storage does not answer (%s): this job's trial gets no heartbeat.", type(exc).__name__)
            return
        self.heartbeat = beating(storage, self.trial_id, self.interval)
        self.heartbeat.__enter__()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.heartbeat is not None:
            self.heartbeat.__exit__(None, None, None)
            self.heartbeat = None


def trial_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """A job of this project's Optuna sweeper: its link to its trial, and the pruning callback when
    the sweep has a pruner; nothing for a single run or another sweeper's job."""
    settings = sweeper()
    if settings.get("trial") is None or not settings.get("storage"):
        return []
    link = TrialLink(settings.storage, settings.trial, settings.get("heartbeat_interval", 30), cfg.run_dir)
    pruning = prune_trial_callback(cfg)
    return [link] + ([pruning] if pruning else [])


def prune_trial_callback(cfg: DictConfig) -> PruneTrial | None:
    """The pruning callback of a job of this project's Optuna sweeper with a pruner, else None
    (a single run, another sweeper, no pruner, or several objectives: Optuna prunes one)."""
    settings = sweeper()
    trial, pruner = settings.get("trial"), settings.get("pruner")
    if trial is None or pruner in (None, "none") or not isinstance(cfg.optimized_metric, str):
        return None
    every = cfg.eval_every if cfg.optimized_metric.startswith("metrics/") else cfg.trainer.log_every_n_steps
    spec = OmegaConf.to_container(pruner, resolve=True) if isinstance(pruner, DictConfig) else pruner
    return PruneTrial(cfg.optimized_metric, every, settings.storage, settings.study_name, trial, spec)
