"""The run's resolved config in every logger: as text, and as the TensorBoard HParams row.

The row is a session without an experiment summary: TensorBoard then builds the table's columns
from all the runs it has open and puts the keys whose values differ among them first, so a
sweep's swept keys are the visible columns (an experiment summary per run would make TensorBoard
pick one run's column list for all, alphabetically). The metric columns are the logged scalars,
sorted by name: `loss/*` first, then `metrics/*`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionStartInfo

from gan.config import flatten
from gan.config.hydra_runtime import choices, hydra, in_sweep, overrides, sweep_folder, sweeper
from gan.config.untrusted import lookup, read_yaml
from gan.engine.lightning_adapter import tensorboard_writer
from gan.files import write_text

# HParams columns every run has, whatever its options; the command line's keys join them.
HEADLINE = ("seed", "data.batch_size", "model.latent_dim", "optimizer.generator.lr", "optimizer.discriminator.lr",
            "gan.n_critic", "gan.d_update", "gan.ema_decay", "trainer.max_steps")
GROUPS = ("data", "model", "loss", "augment", "optimizer", "experiment")
DEFAULT_EXPERIMENT = "default"  # no experiment chosen: train.yaml's defaults, which compose the keras_seed recipe


def table_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The HParams row: the headline keys, the chosen option of each group, and every key set
    on the command line. The jobs of one sweep share their override keys, so they get the same
    columns even when they pick options with different keys (loss=hinge has no real_label)."""
    params = {key: flat[key] for key in HEADLINE}
    if hydra() is not None:
        chosen = choices()
        params.update({group: str(chosen.get(group) or DEFAULT_EXPERIMENT) for group in GROUPS})
        for override in overrides():
            key = override.split("=", 1)[0].lstrip("+~")
            if key in flat:
                params[key] = flat[key]
    return params


def swept_keys() -> set[str]:
    """The keys a sweep varies: its search space (`hydra.sweeper.params`) and, for a grid, the
    overrides with several values in the sweep's command line (Hydra's multirun.yaml)."""
    if not in_sweep():
        return set()
    keys = set(sweeper().get("params") or {})
    grid = sweep_folder() / "multirun.yaml"
    if grid.is_file():
        task = lookup(read_yaml(grid), "hydra.overrides.task") or []  # as data: an override's ${...} is not resolved here
        overrides = OverridesParser.create().parse_overrides([str(o) for o in task])
        keys |= {o.key_or_group for o in overrides if o.is_sweep_override()}
    return keys


def row_name(run_dir: str) -> str:
    """What the HParams table's first column (Trial ID) shows: the job's overrides, the swept
    ones first, then its folder under outputs/ (`model.latent_dim=32 eval_every=0 ·
    multirun/2026-11-28/08-00-00/0`), so two jobs of a sweep never read alike and the narrow
    column's visible start says what differs."""
    swept = swept_keys()
    typed = sorted(overrides(), key=lambda o: o.split("=", 1)[0].lstrip("+~") not in swept)
    folder = Path(run_dir).resolve()
    outputs = Path.cwd().resolve() / "outputs"
    where = os.path.relpath(folder, outputs) if folder.is_relative_to(outputs) else folder.name
    return f"{' '.join(typed) or 'defaults'} · {where}"


def session_start(params: Mapping[str, bool | int | float | str], group_name: str) -> Summary:
    """The HParams session record (what tensorboard.plugins.hparams.summary.session_start_pb
    writes, without importing TensorFlow as that module does)."""
    info = SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for key, value in params.items():
        field = "bool_value" if isinstance(value, bool) else "string_value" if isinstance(value, str) else "number_value"
        setattr(info.hparams[key], field, value)
    content = metadata.create_summary_metadata(HParamsPluginData(session_start_info=info))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_START_INFO_TAG, metadata=content)])


def is_smoke_run() -> bool:
    return choices().get("debug") is not None


def log_run_config(loggers: Iterable[Logger], cfg: DictConfig) -> None:
    """Every logger gets the whole flattened config (hparams.yaml); TensorBoard also gets it as
    text and, except for `debug=` smoke runs, as an HParams row (`table_params`, `row_name`)."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # Lightning writes it once, with a plain open(): here it is whole
            write_text(Path(logger.log_dir) / "hparams.yaml", yaml.safe_dump(params, sort_keys=False))
        logger.log_hyperparams(params)
        if isinstance(logger, TensorBoardLogger):
            text = "\n".join("    " + line for line in OmegaConf.to_yaml(cfg, resolve=True).splitlines())
            logger.experiment.add_text("config", text, 0)
            if not is_smoke_run():
                tensorboard_writer(logger).add_summary(session_start(table_params(params), row_name(cfg.run_dir)))
