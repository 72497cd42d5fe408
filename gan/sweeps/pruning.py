"""Pruning for the jobs of an Optuna sweep (hydra_plugins/gan_optuna_sweeper): each job reports
its `optimized_metric` to its own trial, through the study's storage, every time the metric is
logged; when the study's pruner (`hydra.sweeper.pruner`) says the trial is hopeless, training
stops there as if it had reached its end: last.ckpt and the curves are kept, status.json says
`pruned`, and the sweeper records the trial as PRUNED. Trials running on other machines (joblib,
SLURM) reach the same storage, so the pruner compares each trial with all the others."""

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

            storage, study_name = self.where
            study = optuna.load_study(study_name=study_name, storage=storage, pruner=make_pruner(self.pruner))
            self.trial = optuna.trial.Trial(study, self.trial_id)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if (step % self.every_n_steps or self.metric not in trainer.callback_metrics or self.stop is not None
                or step >= trainer.max_steps):  # a trial at its end has finished, whatever the pruner says
            return
        prune = None
        if trainer.is_global_zero:
            self.trial.report(float(trainer.callback_metrics[self.metric]), step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):  # every process stops at the same iteration
            value = float(trainer.callback_metrics[self.metric])
            pruner = self.pruner if isinstance(self.pruner, str) else "study's"
            reason = f"{self.metric} {value:.4g} is worse than the {pruner} pruner allows at this iteration"
            self.stop = {"rule": "pruner", "reason": reason, "iteration": step}
            trainer.should_stop = True
            log.warning("Pruned at iteration %d: %s.", step, reason)


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
