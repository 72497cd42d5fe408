"""Callbacks of this project (`callbacks` group): sample grids and the crash checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image


class SampleGrid(pl.Callback):
    """An nrow x nrow grid of G(z) for one *fixed* noise batch, every `every_n_steps` GAN
    iterations and at the end: TensorBoard image `samples` and `<dirpath>/<step>.png`.

    The noise comes from its own generator seeded by `seed` (so it does not shift the
    training noise) and is saved in checkpoints, so a resumed run keeps drawing the same grid.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 200, nrow: int = 5, seed: int = 0):
        self.dirpath, self.every_n_steps, self.nrow, self.seed = Path(dirpath), every_n_steps, nrow, seed
        self.noise: torch.Tensor | None = None
        self._last_written = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.noise is None:
            generator = torch.Generator().manual_seed(self.seed)
            self.noise = torch.randn(self.nrow**2, pl_module.latent_dim, generator=generator)

    def state_dict(self) -> dict:
        return {"noise": self.noise}

    def load_state_dict(self, state_dict: dict) -> None:
        self.noise = state_dict["noise"]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_written:
            return
        images = pl_module.sample(self.noise.to(pl_module.device, pl_module.dtype))
        grid = make_grid(images.float().cpu(), nrow=self.nrow, normalize=True, value_range=(-1, 1))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"{step}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, step)
        self._last_written = step


class ExceptionCheckpoint(pl.Callback):
    """Saves the state at a crash or Ctrl-C to `path` (possibly mid-iteration), beside the
    clean `last.ckpt`. Lightning's OnExceptionCheckpoint does this too, but its presence makes
    every `fit` without a `ckpt_path` look for a checkpoint to resume from."""

    def __init__(self, path: str):
        self.path = path

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.path)
