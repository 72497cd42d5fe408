"""The run's resolved config in every logger: as text, and as the TensorBoard HParams row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from torch.utils.tensorboard.summary import hparams


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


def log_run_config(loggers: Iterable[Logger], cfg: DictConfig, metric_tags: Iterable[str]) -> None:
    """TensorBoard gets the config as text and an HParams session whose metric columns are
    `metric_tags`: the table shows each tag's last logged value, i.e. the final metrics."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(params)
        if isinstance(logger, TensorBoardLogger):
            text = "\n".join("    " + line for line in OmegaConf.to_yaml(cfg, resolve=True).splitlines())
            logger.experiment.add_text("config", text, 0)
            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, {tag: 0.0 for tag in metric_tags}):
                writer.add_summary(summary)
