"""One training run, top to bottom: config -> datamodule, module, loggers, callbacks -> Trainer."""

from __future__ import annotations

import logging
import warnings

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from tqdm.contrib.logging import logging_redirect_tqdm

from gan.config.building import build, network_optimizer
from gan.config.hydra_runtime import config_folders
from gan.engine.distributed import cluster_plugins
from gan.errors import UserError
from gan.metrics import available, logged_tag
from gan.metrics.protocols import DEFAULT, parse
from gan.module import GAN, LOGGED_METRICS
from gan.run.checkpoints.files import load_checkpoint, resolve_checkpoint
from gan.run.checkpoints.resume import check_resume
from gan.run.checkpoints.saving import CheckpointContents, WholeCheckpoints
from gan.run.hparams import log_run_config
from gan.run.ranks import process_rank
from gan.run.signals import StopOnSignal
from gan.run.trackers import start as start_trackers
from gan.sweeps.pruning import trial_callbacks
from gan.training.schema import validate
from gan.training.sizing import check_before_building

log = logging.getLogger(__name__)

# Lightning notices that do not apply here: checkpoints are taken between GAN iterations by
# design; a resumed run writes to a new folder; the batches are drawn from (seed, step), so
# resuming mid-epoch replays exactly what an uninterrupted run would have drawn.
QUIET_NOTICES = (
    "Using ModelCheckpoint with manual optimization",
    "The dirpath has changed from",
    "You're resuming from a checkpoint that ended before the epoch ended",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Checkpoint directory .* exists and is not empty",  # a requeued job continuing in its own folder
)
for message in QUIET_NOTICES:
    warnings.filterwarnings("ignore", message=message)
# Lightning's start-up lines that say nothing about this run: which accelerators exist (the run
# folder's config says which one it uses) and an advertisement.
QUIET_LINES = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:")
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith(QUIET_LINES))


def check_optimizers(cfg: DictConfig) -> None:
    """The optimizers are built inside `fit`; build each once on a dummy tensor first, so a
    wrong argument (`+optimizer.generator.lrr=1`) stops the run before anything is written."""
    for net in ("generator", "discriminator"):
        try:
            network_optimizer(cfg.optimizer, net)([torch.zeros(1, requires_grad=True)])
        except (TypeError, ValueError) as exc:
            raise UserError(f"optimizer.{net} ({cfg.optimizer._target_}) does not accept its arguments: {exc}") from None


def optimized_metrics(cfg: DictConfig) -> list[str]:
    """`optimized_metric` as a list: one name, or several for a multi-objective study."""
    names = cfg.optimized_metric
    return [] if names is None else [names] if isinstance(names, str) else list(names)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float] | None:
    """What train.py returns to a sweeper: the optimized metric's last value (a list of them for several)."""
    values = []
    for name in optimized_metrics(cfg):
        if name not in metrics:
            raise UserError(f"optimized_metric={name} was never logged: the run ended before its first "
                            f"value (trainer.max_steps={cfg.trainer.max_steps}, eval_every={cfg.eval_every}, "
                            f"trainer.log_every_n_steps={cfg.trainer.log_every_n_steps}).")
        values.append(metrics[name])
    return None if not values else values[0] if isinstance(cfg.optimized_metric, str) else values


def size(net: torch.nn.Module) -> str:
    """`MLPGenerator (1.49 M parameters)`: what Lightning's summary table says that matters
    (its FLOPs column reads 0 without an example input, so the table is off)."""
    return f"{type(net).__name__} ({sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters)"


def metrics_features(cfg: DictConfig) -> str:
    """The metrics' feature network, of `callbacks.metrics.protocol` (the classifier when the callback is dropped)."""
    return parse(OmegaConf.select(cfg, "callbacks.metrics.protocol", default=DEFAULT), key="callbacks.metrics.protocol").features


def metric_tags(cfg: DictConfig, labelled: bool = True) -> tuple[str, ...]:
    """The scalars a run reports at its end: its HParams columns and what `optimized_metric` may name
    (a dataset without labels allows fewer metrics: gan.metrics.available)."""
    if not cfg.eval_every:
        return LOGGED_METRICS
    names, _ = available(labelled, metrics_features(cfg), bool(cfg.model.conditional))
    return LOGGED_METRICS + tuple(f"metrics/{name}" for name in names)


HPARAMS_FIRST = ("fid", "intra_fid", "precision", "recall", "modes_covered")  # what a sweep's table shows ticked


def hparams_metrics(tags: tuple[str, ...], protocol: str | None) -> list[str]:
    """The HParams metric columns of a sweep, in the order TensorBoard ticks them: the evaluation's
    (FID first, as logged under the protocol), then the losses."""
    names = [tag.removeprefix("metrics/") for tag in tags if tag.startswith("metrics/")]
    names.sort(key=lambda name: HPARAMS_FIRST.index(name) if name in HPARAMS_FIRST else len(HPARAMS_FIRST))
    scores = [logged_tag(name, protocol) for name in names]
    return scores + [tag for tag in tags if not tag.startswith("metrics/")] if protocol else list(tags)


def fit(cfg: DictConfig) -> dict[str, float]:
    validate(cfg)
    # One real batch per D step (and G's, for a pairwise loss); the iterations of one training step drawn together.
    datamodule = build(cfg, "data", batches_per_step=GAN.real_batches(cfg), iterations_per_step=cfg.iterations_per_step)
    tags = metric_tags(cfg, datamodule.labelled)
    for name in optimized_metrics(cfg):
        if name not in tags:
            why = " (metrics/* need eval_every > 0)" if not cfg.eval_every else "" if datamodule.labelled else \
                f" ({available(False, metrics_features(cfg), bool(cfg.model.conditional))[1]})"
            raise UserError(f"optimized_metric={name} is not reported by this run; it reports {', '.join(tags)}{why}.")
    check_optimizers(cfg)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path)
    # an unsafe file or no checkpoint stops here: the file is data, and names only what this run's config folders offer
    checkpoint, saved = load_checkpoint(ckpt_path, config_folders()) if ckpt_path else (None, None)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule.prepare_data()  # a missing dataset stops the run here, before anything is built (a folder: decoded once)
    with open_dict(cfg):  # a folder's classes are its sub-folders: the networks size their label embeddings from them
        cfg.data.num_classes = datamodule.num_classes
    if cfg.model.conditional and datamodule.num_classes is None:
        raise UserError("model.conditional=true needs class labels, and this data has none (data.labels=none): use "
                        "data.labels=folders with one sub-folder per class, or model.conditional=false.")
    check_before_building(cfg)  # a batch BatchNorm cannot use, a model larger than memory: refused before it is built
    module = GAN.from_config(cfg)
    if checkpoint is not None:
        check_resume(cfg, checkpoint, saved, module, ckpt_path)
        del checkpoint  # Lightning reads the file again, with weights_only=True
    loggers = [instantiate(c) for c in cfg.logger.values()]
    # not optional: a signal's clean stop (gan/run/signals.py), the config in every checkpoint (gan/run/checkpoints/)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [StopOnSignal(), CheckpointContents.of(cfg)]
    callbacks += trial_callbacks(cfg)  # a trial of an Optuna sweep: its heartbeat, its pruner (after the metrics callback)
    # A checkpoint kept on a metric this data does not have (best_fid.ckpt without labels) would never be written.
    missing = set(metric_tags(cfg)) - set(tags)
    callbacks = [c for c in callbacks if getattr(c, "monitor", None) not in missing]
    if process_rank() == 0:  # one-off work (the metrics' feature network) before other processes start
        for callback in callbacks:
            if hasattr(callback, "prepare"):
                callback.prepare(datamodule)
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)  # else Lightning adds its own
    trainer: pl.Trainer = build(cfg, "trainer", logger=loggers or False, callbacks=callbacks,
                                enable_checkpointing=checkpointing, plugins=[*cluster_plugins(), WholeCheckpoints()])
    protocols = [c.protocol.name for c in callbacks if getattr(c, "protocol", None) and getattr(c, "every_n_steps", 0)]
    if process_rank() == 0:  # the others' loggers write nothing either
        start_trackers(loggers)  # the MLflow / W&B run exists (or is found again) before training
        log_run_config(loggers, cfg, hparams_metrics(tags, protocols[0] if protocols else None))

    log.info("Run folder: %s", cfg.run_dir)
    log.info("Networks: G %s, D %s", size(module.generator), size(module.discriminator))
    with logging_redirect_tqdm():  # log lines print above the progress bar, not glued to its end
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)  # never unpickle code
    # The last logged scalars, and how far training got (less than max_steps when a callback stopped it).
    run = {"global_step": trainer.global_step, "processes": trainer.world_size}
    stops = [c.stop for c in callbacks if getattr(c, "stop", None)]  # the health monitor's or the pruner's
    if stops:
        run["stop"] = stops[0]
    if protocols:  # what the metrics/* numbers are: status.json says it beside them, with the real-data floor
        run["metrics_protocol"] = protocols[0]
        floors = [c.floor for c in callbacks if getattr(c, "floor", None)]
        if floors:
            run["metrics_floor"] = floors[0]
    if getattr(trainer.strategy, "replicas_identical", None) is not None:  # several processes (gan/engine/distributed.py)
        run["replicas_identical"] = trainer.strategy.replicas_identical
    return {**{k: v.item() for k, v in trainer.callback_metrics.items()}, **run}
