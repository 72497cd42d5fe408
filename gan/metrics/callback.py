"""Metrics during training: every `eval_every` iterations, score the generator and log
`metrics/<name>`; the `best` checkpoint callback keeps the lowest-FID state beside last.ckpt."""

from __future__ import annotations

import logging
from typing import Literal

import pytorch_lightning as pl

from gan.constraints import Count, NonNegInt, PosInt
from gan.lightning_adapter import publish_metrics
from gan.metrics import BETTER, METRICS
from gan.metrics.evaluator import Evaluator
from gan.metrics.inception import InceptionFeatures

log = logging.getLogger(__name__)


class EvaluateMetrics(pl.Callback):
    def __init__(self, every_n_steps: NonNegInt, n: Count = 10_000, k: PosInt = 3,
                 seed: NonNegInt = 0, features: Literal["classifier", "inception"] = "classifier",
                 inception_weights: str | None = None):
        self.every_n_steps = every_n_steps
        if every_n_steps and features == "inception":
            InceptionFeatures.check(inception_weights)  # before the Trainer exists, not at the first evaluation
        self.options = {"n": n, "k": k, "seed": seed, "features": features, "inception_weights": inception_weights}
        self.evaluator: Evaluator | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Before the first iteration: a missing classifier is trained (and cached) now, not mid-run.
        if self.every_n_steps and self.evaluator is None:
            self.evaluator = Evaluator(trainer.datamodule, **self.options)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step % self.every_n_steps:
            return
        bar = trainer.progress_bar_callback
        result = self.evaluator(pl_module.eval_generator, progress=bar is not None and bar.is_enabled)  # the EMA one if kept
        metrics = {f"metrics/{name}": float(result[name]) for name in METRICS}
        for logger in trainer.loggers:  # at this step, whatever trainer.log_every_n_steps is
            logger.log_metrics(metrics, step=step)
        publish_metrics(trainer, metrics)  # for the `best` checkpoint (monitor: metrics/fid) and fit()'s result
        log.info("step %d: %s  (↑ higher is better, ↓ lower)", step,
                 ", ".join(f"{name} {result[name]:.4g} {BETTER[name]}" for name in METRICS))
