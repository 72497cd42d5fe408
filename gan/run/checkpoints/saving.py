"""What a checkpoint holds besides Lightning's own state, and the checkpoint written at a crash."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from gan.engine.lightning_adapter import finite_weights


class CheckpointContents(pl.Callback):
    """Into every checkpoint: the run's config as written (for the record) and resolved (what a
    checkpoint alone rebuilds its generator from, gan.evaluate and gan.generate, without
    resolving anything a file says: gan/config/untrusted.py). Out of one being resumed: this
    run's optimizer hyper-parameters over the saved ones (what a resume may change: resume.py)."""

    def __init__(self, config: dict, resolved: dict):
        self.config, self.resolved = config, resolved

    @classmethod
    def of(cls, cfg: DictConfig) -> CheckpointContents:
        return cls(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["config"], checkpoint["resolved_config"] = self.config, self.resolved

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Before Lightning restores the optimizers from `checkpoint`."""
        for state, factory in zip(checkpoint.get("optimizer_states", []), (pl_module.g_optimizer, pl_module.d_optimizer)):
            for group in state["param_groups"]:
                group.update({k: v for k, v in getattr(factory, "keywords", {}).items() if k in group})
                if "capturable" in group:  # a CUDA graph run's choice; this run makes its own at train start
                    group["capturable"] = False


class ExceptionCheckpoint(pl.Callback):
    """Saves the state at a crash or Ctrl-C to `path` (possibly mid-iteration), beside the
    clean `last.ckpt`. Lightning's OnExceptionCheckpoint does this too, but its presence makes
    every `fit` without a `ckpt_path` look for a checkpoint to resume from."""

    def __init__(self, path: str):
        self.path = path

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # A run that never trained has nothing to save, and NaN weights are no state to resume from.
        if trainer.global_step > 0 and finite_weights(pl_module):
            trainer.save_checkpoint(self.path)
