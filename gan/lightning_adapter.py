"""Every use of Lightning internals in one place.

The runner needs four things Lightning has no public API for. Each is wrapped here and pinned
by a test in tests/test_lightning_adapter.py, so that a Lightning release that changes one
breaks this file and that test, loudly, instead of a callback somewhere mid-run.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger


def checkpoint_state_key(callback: ModelCheckpoint, name: str) -> str:
    """ModelCheckpoint's state key with `name` added: Lightning keys a checkpoint callback's
    saved state by its monitor and intervals only, so two with the same interval would collide."""
    return callback._generate_state_key(
        name=name,
        monitor=callback.monitor,
        mode=callback.mode,
        every_n_train_steps=callback._every_n_train_steps,
        every_n_epochs=callback._every_n_epochs,
        train_time_interval=callback._train_time_interval,
    )


def tensorboard_writer(logger: TensorBoardLogger):
    """The logger's own event-file writer, for summaries its API does not write (the HParams
    session with our metric columns)."""
    return logger.experiment._get_file_writer()


def publish_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Make scores computed in a callback visible as if logged by the module: ModelCheckpoint's
    `monitor` (best_fid.ckpt) and the run's final result read `trainer.callback_metrics`."""
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})


def uncounted_optimizer_step(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> None:
    """What LightningOptimizer.step does (precision plugin, gradient hooks) without advancing
    `global_step`, so that the discriminator's steps leave it counting GAN iterations."""
    trainer.strategy.optimizer_step(optimizer, closure=lambda: None)
