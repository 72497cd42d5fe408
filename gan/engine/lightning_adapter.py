"""Every use of Lightning internals (and one of torch's) in one place.

The runner needs a few things Lightning has no public API for. Each is wrapped here and pinned
by a test in tests/engine/test_lightning_adapter.py (the Checkpoint fixes by
tests/training/test_train.py::test_checkpoint_names_and_last_ckpt_hold_the_iteration_they_say), so that a
Lightning release that changes one breaks this file and that test, loudly, instead of a callback
somewhere mid-run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.model_helpers import is_overridden

from gan.engine.distributed import GANDDPStrategy

log = logging.getLogger(__name__)


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


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with four fixes, all through its internals:
    - its saved state is keyed by `name` too: Lightning refuses two ModelCheckpoints with the
      same monitor and interval (`checkpoint` and `last` both every 500 steps), as their states
      would collide in the checkpoint file;
    - `{step}` in a file name is the iteration saved: Lightning takes the last *logged* `step`
      scalar, so with checkpoints every 60 and logging every 50, step_000050.ckpt held 60;
    - with `save_last`, a run that ends (max_steps, or a callback stopping it) writes last.ckpt
      at its final iteration: Lightning skips that save when one was written during the run;
    - weights that are NaN or infinite are never saved, so a diverged run cannot overwrite its
      last finite checkpoint."""

    def __init__(self, name: str, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    @property
    def state_key(self) -> str:
        return checkpoint_state_key(self, self.name)

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        candidates["step"] = torch.tensor(trainer.global_step)
        return candidates

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not finite_weights(trainer.lightning_module):
            log.warning("Not saving %s at iteration %d: the weights are NaN or infinite; the last finite "
                        "checkpoint stays as it was.", Path(filepath).name, trainer.global_step)
            return
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and self._last_global_step_saved != trainer.global_step and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def finite_weights(module: torch.nn.Module) -> bool:
    return bool(torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all())


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


def checkpoint_every_n_steps(callback: pl.Callback) -> int | None:
    """A ModelCheckpoint's `every_n_train_steps` (Lightning keeps it private), else None."""
    return getattr(callback, "_every_n_train_steps", None) if isinstance(callback, ModelCheckpoint) else None


def count_iteration(trainer: pl.Trainer) -> None:
    """Advance `global_step` by one GAN iteration whose optimizer steps ran outside Lightning
    (straight on the torch optimizers, or replayed from a CUDA graph), as one
    LightningOptimizer.step would have: manual optimization counts its optimizer steps."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


def sync_logging_step(trainer: pl.Trainer) -> None:
    """Lightning decides whether to write logged scalars from its count of training steps
    (`_batches_that_stepped`, which it advances by one after each step), not from
    `global_step`; with several GAN iterations per step, set it so that both agree."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step - 1


def gradient_scaler(trainer: pl.Trainer):
    """The precision plugin's GradScaler (16-mixed), or None: with one, each optimizer step must go
    through the plugin (unscale, skip on inf, update the scale)."""
    return getattr(trainer.precision_plugin, "scaler", None)


def iteration_precision(trainer: pl.Trainer):
    """The precision plugin's context for the model's forward passes: autocast with its cast
    cache off under `*-mixed` (a cached cast would outlive the optimizer step that changed its
    weight, and a CUDA graph cannot hold one), nothing under `32-true`. Lightning enters it
    around each training step; a captured iteration enters it itself (gan/engine/cuda_graphs.py)."""
    return trainer.precision_plugin.forward_context()


# Hooks Lightning calls around each manual backward and optimizer step.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def step_hook_users(trainer: pl.Trainer) -> list[str]:
    """The callbacks (and the module) that override a per-step hook, by class name: they need
    every backward and optimizer step to go through Lightning."""
    users = [trainer.lightning_module, *trainer.callbacks]
    return [type(u).__name__ for u in users if any(is_overridden(hook, u) for hook in STEP_HOOKS)]


def lightning_steps_reason(trainer: pl.Trainer) -> str | None:
    """Why this run's backward passes and optimizer steps must go through Lightning's strategy
    and precision plugin (their hooks, a gradient scaler, a distributed strategy), or None when
    calling the torch optimizers directly does exactly what Lightning would."""
    if gradient_scaler(trainer) is not None:
        return f"trainer.precision={trainer.precision} uses a gradient scaler"
    if trainer.world_size > 1 and not isinstance(trainer.strategy, GANDDPStrategy):  # ours syncs in each network's wrapper
        return f"{type(trainer.strategy).__name__} runs on {trainer.world_size} processes"
    if users := step_hook_users(trainer):
        return f"{', '.join(users)} hook into each backward or optimizer step"
    return None


def skip_graph_capture_check(optimizer: torch.optim.Optimizer) -> None:
    """torch's optimizers ask, at every step, whether a CUDA graph is being captured; without a
    CUDA driver that asks NVML (Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1), which loads
    libnvidia-ml each time, three times an iteration. An optimizer whose parameters
    are on the CPU is never inside a capture, so it skips the question."""
    optimizer._accelerator_graph_capture_health_check = lambda: None
