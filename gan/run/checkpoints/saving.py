"""What a checkpoint holds besides Lightning's own state, how every checkpoint is written, and
the checkpoint written at a crash."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.io import TorchCheckpointIO

from gan.engine.lightning_adapter import finite_weights
from gan.files import WriteFailed, save_torch
from gan.run.checkpoints.files import readable_checkpoints

log = logging.getLogger(__name__)


class WholeCheckpoints(TorchCheckpointIO):
    """Every checkpoint through gan/files.py: whole or not at all, the previous one untouched by a
    write that fails. Lightning's own writer finishes through a temporary file in the system's
    temporary folder, which becomes a copy, overwriting last.ckpt in place, wherever that is
    another file system (a cluster's scratch disk). A URL (s3://...) is left to Lightning."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            save_torch(checkpoint, path)
        except WriteFailed as exc:
            kept = ", ".join(f"{p.name} (iteration {step})" for p, step in readable_checkpoints(Path(path).parent))
            raise exc.keeping(f"the run keeps {kept or 'no checkpoint'} in {Path(path).parent}") from None


class CheckpointContents(pl.Callback):
    """Into every checkpoint: the run's config as written (for the record) and resolved (what a
    checkpoint alone rebuilds its generator from, gan.evaluate and gan.generate, without
    resolving anything a file says: gan/config/untrusted.py), and the data's class names (what
    a conditional generator's labels mean, for its class sheets and exports). Out of one being resumed: this
    run's optimizer hyper-parameters over the saved ones (what a resume may change: resume.py)."""

    def __init__(self, config: dict, resolved: dict):
        self.config, self.resolved = config, resolved

    @classmethod
    def of(cls, cfg: DictConfig) -> CheckpointContents:
        return cls(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["config"], checkpoint["resolved_config"] = self.config, self.resolved
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        if names:
            checkpoint["class_names"] = list(names)

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
            try:
                trainer.save_checkpoint(self.path)
            except Exception as failed:  # the run's own error is the one to report (a full disk fails here too)
                log.error("%s not written: %s", Path(self.path).name, failed)
