"""Callbacks of this project (`callbacks` group): sample grids, the health monitor, the progress
bar. (The checkpoints' callbacks: gan/run/checkpoints/.)"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw, ImageFont
from pytorch_lightning.callbacks import TQDMProgressBar
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from gan.augment import NoAugment
from gan.config.constraints import Fraction, NonNegInt, PosInt
from gan.config.hydra_runtime import sweeper
from gan.data import to_unit
from gan.files import save_image
from gan.run.trackers import publish_image

log = logging.getLogger(__name__)


def readable(grid: torch.Tensor, caption: str, width: int = 600) -> Image.Image:
    """A grid as a person opens it: enlarged (whole pixels, no blur) to about `width` pixels,
    with `caption` above it."""
    image = to_pil_image(grid)
    scale = max(1, round(width / image.width))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + 28), "white")
    canvas.paste(image, (0, 28))
    ImageDraw.Draw(canvas).text((8, 5), caption, fill="black", font=ImageFont.load_default(size=18))
    return canvas


MAX_GRID_WIDTH = 1024  # pixels: larger images get fewer columns (5 of 64x64, 4 of 256x256, 2 of 512x512)
MAX_CLASS_ROWS = 10  # a conditional grid shows the first 10 classes, one row each


def grid_columns(nrow: int, side: int) -> int:
    """How many images a grid row holds: `nrow`, unless that would be wider than MAX_GRID_WIDTH."""
    return max(2, min(nrow, MAX_GRID_WIDTH // side))


class SampleGrid(pl.Callback):
    """An nrow x nrow grid of G(z) for one *fixed* noise batch, every `every_n_steps` GAN
    iterations and at the end (0: only at the end): image `samples` in every logger (as generated) and
    `<dirpath>/<step, 6 digits>.png` (enlarged, with the iteration written on it).
    A conditional generator gets one row per class instead (the first 10), `nrow` samples wide,
    the same noise down each column. Large images get fewer columns (`grid_columns`). The EMA
    generator draws it when the run keeps one. The grids are never augmented; a run that
    augments what D sees also gets image `reals_seen` at the start and with each
    grid: the first training images as D sees them then (with ADA, at that moment's p).

    The noise comes from its own generator seeded by `seed` (so it does not shift the
    training noise) and is saved in checkpoints, so a resumed run keeps drawing the same grid.
    """

    def __init__(self, dirpath: str, every_n_steps: NonNegInt = 200, nrow: PosInt = 5, seed: NonNegInt = 0):
        self.dirpath, self.every_n_steps, self.nrow, self.seed = Path(dirpath), every_n_steps, nrow, seed
        self.noise: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._last_written = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.nrow = grid_columns(self.nrow, pl_module.generator.out_shape[-1])
        classes = pl_module.num_classes
        if classes is not None:
            classes = min(classes, MAX_CLASS_ROWS)
            self.labels = torch.arange(classes).repeat_interleave(self.nrow)
        if self.noise is None:
            rng = torch.Generator().manual_seed(self.seed)
            self.noise = pl_module.generator.draw_noise(self.nrow if classes else self.nrow**2, rng)
            if classes is not None:
                self.noise = self.noise.repeat(classes, 1)

    def state_dict(self) -> dict:
        return {"noise": self.noise}

    def load_state_dict(self, state_dict: dict) -> None:
        self.noise = state_dict["noise"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write_seen(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_written:
            return
        labels = None if self.labels is None else self.labels.to(pl_module.device)
        images = pl_module.sample(self.noise.to(pl_module.device, pl_module.dtype), labels, net=pl_module.eval_generator)
        grid = make_grid(images.float().cpu(), nrow=self.nrow, normalize=True, value_range=(-1, 1))
        if trainer.is_global_zero:  # every process draws the grid (cheap); one writes it
            save_image(readable(grid, f"iteration {step}"), self.dirpath / f"{step:06d}.png")
        if trainer.is_global_zero:
            publish_image(trainer.loggers, "samples", grid, step)
        self.write_seen(trainer, pl_module)
        self._last_written = step

    @torch.no_grad()
    def write_seen(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Image `reals_seen` in every logger: the first training images through the run's augmentation."""
        if isinstance(pl_module.augment, NoAugment) or not trainer.loggers:
            return
        reals = to_unit(torch.as_tensor(trainer.datamodule.images[: self.nrow**2]).to(pl_module.device))
        rng = torch.Generator(device=pl_module.device).manual_seed(self.seed + trainer.global_step)
        seen = pl_module.augment.show(reals, rng)
        grid = make_grid(seen.float().cpu(), nrow=self.nrow, normalize=True, value_range=(-1, 1))
        if trainer.is_global_zero:
            publish_image(trainer.loggers, "reals_seen", grid, trainer.global_step)


class HealthMonitor(pl.Callback):
    """Watches the scalars the run already logs (no extra device reads) and says, once per
    problem, when training has failed: D wins outright (mean D(x) above `d_real_above` and mean
    D(G(z)) below `d_fake_below` at every logged step for `window` iterations; BCE losses only,
    where that starves G of gradient and D's outputs are probabilities), a loss is NaN or
    infinite, or the samples cover fewer than `min_modes` classes (needs eval_every > 0; judged
    only from `warmup` of the run on: early samples of any GAN cover few classes).
    Logs warnings/d_wins, warnings/nonfinite and warnings/low_modes (0 or 1). `nonfinite_action=stop`
    (the default) ends a run whose losses are NaN or infinite; `action=stop` also ends it on the
    other two (last.ckpt is still written, unless its weights are not finite), except in a trial of
    an Optuna sweep with a pruner, where the pruner judges a poor trial (`in_search=defer`) unless
    `in_search=apply`. A stop is recorded in `stop` (rule, reason, iteration) for status.json."""

    def __init__(self, action: Literal["warn", "stop"] = "warn", window: PosInt = 1000, d_real_above: Fraction = 0.95,
                 d_fake_below: Fraction = 0.05, min_modes: NonNegInt = 8, nonfinite_action: Literal["warn", "stop"] = "stop",
                 warmup: Fraction = 0.2, in_search: Literal["defer", "apply"] = "defer"):
        if action not in ("warn", "stop") or nonfinite_action not in ("warn", "stop") or in_search not in ("defer", "apply"):
            raise ValueError(f"action and nonfinite_action must be warn or stop, in_search defer or apply, got "
                             f"{action!r}, {nonfinite_action!r}, {in_search!r}")
        self.action, self.nonfinite_action, self.window, self.min_modes = action, nonfinite_action, window, min_modes
        self.d_real_above, self.d_fake_below, self.warmup, self.in_search = d_real_above, d_fake_below, warmup, in_search
        self.streak_start: int | None = None
        self.reported: set[str] = set()
        self.seen_modes: torch.Tensor | None = None
        self.stop: dict | None = None  # what stopped the run: {"rule", "reason", "iteration"}
        self.deferred = False  # a trial of an Optuna search with a pruner (in_search=defer): action=stop only warns

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        settings = sweeper()
        self.deferred = self.in_search == "defer" and settings.get("trial") is not None and \
            settings.get("pruner") not in (None, "none")  # the pruner stops hopeless trials: collapse and D's win are said

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step, metrics = trainer.global_step, trainer.callback_metrics
        if step % trainer.log_every_n_steps == 0 and "train/d_real" in metrics:
            signals = self._losses(step, {k: float(v) for k, v in metrics.items() if k.startswith(("loss/", "train/"))},
                                   pl_module.loss.probabilities)
            self._emit(trainer, step, signals)
        modes = metrics.get("metrics/modes_covered")
        if modes is not None and modes is not self.seen_modes:  # the metrics callback stored a new score
            self.seen_modes = modes
            classes = getattr(trainer.datamodule, "num_classes", None) or self.min_modes  # a 3-class folder covers 3 at most
            judged = step >= self.warmup * trainer.max_steps
            self._emit(trainer, step, {"low_modes": judged and float(modes) < min(self.min_modes, classes)},
                       f" ({float(modes):.0f} of {classes})")

    def _losses(self, step: int, m: dict[str, float], probabilities: bool) -> dict[str, bool]:
        if probabilities and m["train/d_real"] > self.d_real_above and m["train/d_fake"] < self.d_fake_below:
            self.streak_start = step if self.streak_start is None else self.streak_start
        else:
            self.streak_start = None
        nonfinite = not all(math.isfinite(m[k]) for k in ("loss/d", "loss/g"))
        return {"d_wins": self.streak_start is not None and step - self.streak_start >= self.window, "nonfinite": nonfinite}

    def _emit(self, trainer: pl.Trainer, step: int, signals: dict[str, bool], numbers: str = "") -> None:
        for logger in trainer.loggers:
            logger.log_metrics({f"warnings/{name}": float(on) for name, on in signals.items()}, step=step)
        messages = {
            "d_wins": f"D wins outright: D(x) > {self.d_real_above} and D(G(z)) < {self.d_fake_below} "
                      f"for {self.window} iterations (G gets no gradient)",
            "nonfinite": "a loss is NaN or infinite",
            "low_modes": f"mode collapse: the samples cover fewer than {self.min_modes} classes{numbers}",
        }
        for name, on in signals.items():
            if on and name not in self.reported:
                self.reported.add(name)
                key = "nonfinite_action" if name == "nonfinite" else "action"
                stop = getattr(self, key) == "stop"
                stopping = f" Stopping (callbacks.health.{key}=stop)." if stop else ""
                if stop and key == "action" and self.deferred:
                    stop, stopping = False, " Going on: the study's pruner judges this trial (callbacks.health.in_search=defer)."
                if trainer.is_global_zero:  # every process decides alike (their scalars are averaged); one says so
                    log.warning("Training health, step %d: %s.%s", step, messages[name], stopping)
                if stop and self.stop is None:
                    self.stop = {"rule": f"health.{name}", "reason": messages[name], "iteration": step}
                    trainer.should_stop = True


class IterationProgressBar(TQDMProgressBar):
    """Lightning's progress bar counting GAN iterations (`global_step` out of `max_steps`, and
    iterations per second) instead of training steps, each of which runs several iterations;
    one bar for the whole run. Refreshes when `refresh_rate` more iterations are done."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.total = trainer.max_steps if trainer.max_steps > 0 else None
        bar.n = bar.last_print_n = bar.initial = trainer.global_step  # a resumed run starts where it was
        bar.set_description("Training")
        self._shown = trainer.global_step

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # a tracker's run id, not a figure to watch
        return metrics

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        step = trainer.global_step
        if self.is_enabled and (step - self._shown >= self.refresh_rate or step == trainer.max_steps):
            self._shown = step
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar
