"""The run's resolved config in every logger: as text, and as the TensorBoard HParams row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from gan.lightning_adapter import tensorboard_writer


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Dotted keys, scalar values. Lists become their text and None "null", so every run of a
    sweep has the same keys with comparable values in the HParams table."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(list(value) if isinstance(value, (list, tuple)) else value)
    return flat


# HParams columns every run has, whatever its options; the command line's keys join them.
HEADLINE = ("seed", "data.batch_size", "model.latent_dim", "optimizer.generator.lr", "optimizer.discriminator.lr",
            "gan.n_critic", "gan.d_update", "gan.ema_decay", "trainer.max_steps")
GROUPS = ("data", "model", "loss", "optimizer", "experiment")


def table_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The HParams row: the headline keys, the chosen option of each group, and every key set
    on the command line. The jobs of one sweep share their override keys, so they get the same
    columns even when they pick options with different keys (loss=hinge has no real_label)."""
    params = {key: flat[key] for key in HEADLINE}
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        params.update({group: str(hydra.runtime.choices.get(group)) for group in GROUPS})
        for override in hydra.overrides.task:
            key = override.split("=", 1)[0].lstrip("+~")
            if key in flat:
                params[key] = flat[key]
    return params


def log_run_config(loggers: Iterable[Logger], cfg: DictConfig, metric_tags: Iterable[str]) -> None:
    """Every logger gets the whole flattened config (hparams.yaml); TensorBoard also gets it as
    text and an HParams session (`table_params`) whose metric columns are `metric_tags`: the
    table shows each tag's last logged value, i.e. the final metrics."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(params)
        if isinstance(logger, TensorBoardLogger):
            text = "\n".join("    " + line for line in OmegaConf.to_yaml(cfg, resolve=True).splitlines())
            logger.experiment.add_text("config", text, 0)
            writer = tensorboard_writer(logger)
            for summary in hparams(table_params(params), {tag: 0.0 for tag in metric_tags}):
                writer.add_summary(summary)
