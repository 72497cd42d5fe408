"""Metrics during training: every `eval_every` iterations, score the generator under the run's
protocol and log `metrics/<protocol>/<name>`; inside the run they are `metrics/<name>`, so the
`best` checkpoint callback (lowest FID beside last.ckpt) and `optimized_metric` read the run's own.
Beside them, `floor/<protocol>/<name>`: real images of the other split scored the same way (the
number a perfect generator would read), computed once and cached."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from gan.config.constraints import Count, NonNegInt, PosInt
from gan.engine.lightning_adapter import publish_metrics
from gan.metrics import BETTER, METRICS, available, logged_tag
from gan.metrics.evaluator import Evaluator
from gan.metrics.inception import check
from gan.metrics.protocols import DEFAULT, ProtocolName, parse

log = logging.getLogger(__name__)


class EvaluateMetrics(pl.Callback):
    def __init__(self, every_n_steps: NonNegInt, protocol: ProtocolName = DEFAULT, n: Count | None = None, k: PosInt = 3,
                 seed: NonNegInt = 0, inception_weights: str | None = None, conditional: bool = False):
        self.every_n_steps = every_n_steps
        self.protocol = parse(protocol, n, "callbacks.metrics.protocol")
        if every_n_steps and self.protocol.features == "inception":
            check(inception_weights)  # before the Trainer exists, not at the first evaluation
        self.conditional = conditional
        self.options = {"protocol": self.protocol, "k": k, "seed": seed, "inception_weights": inception_weights,
                        "conditional": conditional}
        self.evaluator: Evaluator | None = None
        self.names: tuple[str, ...] = METRICS  # what the data allows (gan.metrics.available)
        self.prepared = False
        self.floor: dict[str, float] | None = None  # real images' scores under the same protocol: what "good" reads

    def prepare(self, datamodule) -> None:
        """Train (or load) the feature network and the real features before the first iteration,
        not mid-run. gan.training.fit calls it in rank zero before the Trainer starts any other process,
        so no two processes of a run ever train it (and a lock keeps two runs from doing so).
        Says once, in the log, which metrics this data cannot have and why."""
        if not self.every_n_steps or self.prepared:
            return
        self.prepared = True
        self.names, missing = available(datamodule.labelled, self.protocol.features, self.conditional)
        if missing:
            log.warning("Metrics: %s.", missing)
        if self.names:
            self.evaluator = Evaluator(datamodule, **self.options)
            self.floor = self.evaluator.cached_floor()
            log.info("Real-data floor (%s, real images scored as samples): %s", self.protocol.name,
                     ", ".join(f"{name} {value:.4g}" for name, value in self.floor.items()))
            if self.evaluator.accuracy is not None:
                log.info("Feature classifier of %s: %.2f%% accuracy on its held-out images", datamodule.name,
                         100 * self.evaluator.accuracy)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.names, _ = available(trainer.datamodule.labelled, self.protocol.features, self.conditional)  # every process
        if trainer.is_global_zero:  # one process scores (here for a Trainer used without gan.training.fit)
            self.prepare(trainer.datamodule)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """TensorBoard's Custom Scalars tab: each score and its real-data floor on one chart."""
        if not self.floor or not trainer.is_global_zero:
            return
        charts = {name: ["Multiline", [f"^{logged_tag(name, self.protocol.name)}$", f"^floor/{self.protocol.name}/{name}$"]]
                  for name in self.floor}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars({f"{self.protocol.name} vs real data": charts})

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step % self.every_n_steps or not self.names:
            return
        bar = trainer.progress_bar_callback
        result = None
        if self.evaluator is not None:  # rank zero: the replicas hold the same weights, one scoring is enough
            result = self.evaluator(pl_module.eval_generator, progress=bar is not None and bar.is_enabled)  # EMA if kept
            result = {name: float(result[name]) for name in self.names}
        result = trainer.strategy.broadcast(result, src=0)  # every process holds the same scores
        floor = {f"floor/{self.protocol.name}/{name}": value for name, value in (self.floor or {}).items()}
        for logger in trainer.loggers:  # at this step, whatever trainer.log_every_n_steps is
            logger.log_metrics({logged_tag(name, self.protocol.name): result[name] for name in self.names}, step=step)
            if floor:  # a flat line beside each score's curve
                logger.log_metrics(floor, step=step)
        # for the `best` checkpoint (monitor: metrics/fid), optimized_metric and fit()'s result
        publish_metrics(trainer, {f"metrics/{name}": result[name] for name in self.names})
        log.info("step %d, %s: %s  (↑ higher is better, ↓ lower)", step, self.protocol.name,
                 ", ".join(f"{name} {result[name]:.4g} {BETTER[name]}" for name in self.names))
