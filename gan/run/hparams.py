"""The run's resolved config in every logger: as text, and as the TensorBoard HParams row.

A single run's row is a session without an experiment summary: TensorBoard then builds the
table's columns from all the runs it has open and puts the keys whose values differ among them
first. A sweep's job also writes the sweep's experiment summary (the same in every job): its
columns are the keys the sweep varies and its metric columns the evaluation's, FID first (the
losses when the run does not evaluate), because TensorBoard ticks the first five of each. A key
that only passes another's value on (`optimizer.generator.lr: ${optimizer.lr}`) is shown as that
source key, once. When the run ends, its session end records how (`end_session`), so the table's
Status filter works."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo

from gan.config import flatten
from gan.config.hydra_runtime import choices, hydra, overrides
from gan.engine.lightning_adapter import tensorboard_writer
from gan.files import write_text
from gan.run.names import row_name, swept_keys
from gan.run.trackers import TRACKERS, publish_text

log = logging.getLogger(__name__)

# HParams columns every run has, whatever its options; the command line's keys join them.
HEADLINE = ("seed", "data.batch_size", "model.latent_dim", "optimizer.generator.lr", "optimizer.discriminator.lr",
            "gan.n_critic", "gan.d_update", "gan.ema_decay", "trainer.max_steps")
GROUPS = ("data", "model", "loss", "augment", "optimizer", "experiment")
DEFAULT_EXPERIMENT = "default"  # no experiment chosen: train.yaml's defaults, which compose the keras_seed recipe


def table_params(flat: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The HParams row: the headline keys, the chosen option of each group, and every key set
    on the command line, each as its source key (`raw`: the config unresolved). The jobs of one
    sweep share their override keys, so they get the same columns even when they pick options with
    different keys (loss=hinge has no real_label)."""
    keys = list(HEADLINE)
    if hydra() is not None:
        keys += [override.split("=", 1)[0].lstrip("+~") for override in overrides()]
    params = {}
    for key in dict.fromkeys(source_key(raw or {}, key) for key in keys):
        if key in flat:
            params[key] = flat[key]
    if hydra() is not None:
        params.update({group: str(choices().get(group) or DEFAULT_EXPERIMENT) for group in GROUPS})
    return params


REFERENCE = re.compile(r"\$\{([\w.]+)\}")


def source_key(raw: Mapping[str, Any], key: str) -> str:
    """The key whose value `key` only passes on (`optimizer.generator.lr` -> `optimizer.lr`), followed to its end."""
    seen = {key}
    while isinstance(raw.get(key), str) and (match := REFERENCE.fullmatch(raw[key])) and match.group(1) not in seen:
        key = match.group(1)
        seen.add(key)
    return key


def session_start(params: Mapping[str, bool | int | float | str], group_name: str) -> Summary:
    """The HParams session record (what tensorboard.plugins.hparams.summary.session_start_pb
    writes, without importing TensorFlow as that module does)."""
    info = SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for key, value in params.items():
        field = "bool_value" if isinstance(value, bool) else "string_value" if isinstance(value, str) else "number_value"
        setattr(info.hparams[key], field, value)
    content = metadata.create_summary_metadata(HParamsPluginData(session_start_info=info))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_START_INFO_TAG, metadata=content)])


def experiment_summary(hparams: list[str], metrics: list[str]) -> Summary:
    """The HParams experiment record: the columns, in this order, as TensorBoard shows them."""
    info = api_pb2.Experiment(hparam_infos=[api_pb2.HParamInfo(name=name, differs=True) for name in hparams],
                              metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics])
    content = metadata.create_summary_metadata(HParamsPluginData(experiment=info))
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=content)])


# status.json's word -> the session's end status (HParams' Status filter): only a run that reached its end succeeded.
# An interrupted run writes none: a requeued job continues in its folder, and TensorBoard keeps a run's first end.
SESSION_STATUS = {"completed": api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_FAILURE, "pruned": api_pb2.STATUS_FAILURE,
                  "diverged": api_pb2.STATUS_FAILURE, "failed": api_pb2.STATUS_FAILURE}


def session_end(status: str) -> Summary:
    info = SessionEndInfo(status=SESSION_STATUS[status], end_time_secs=time.time())
    content = metadata.create_summary_metadata(HParamsPluginData(session_end_info=info))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content)])


def end_session(cfg: DictConfig, status: str) -> None:
    """The HParams session's end, in the run's TensorBoard folders, once the job knows its status
    (after Lightning closed its writer: a small events file of its own beside the others)."""
    from torch.utils.tensorboard.writer import FileWriter

    if is_smoke_run() or status not in SESSION_STATUS:
        return
    for node in (cfg.get("logger") or {}).values():
        if node is not None and node.get("_target_", "").endswith("TensorBoardLogger"):
            folder = Path(str(node.save_dir)) / str(node.get("name") or "") / str(node.get("version") or "")
            try:
                writer = FileWriter(str(folder), filename_suffix=".session_end")
                writer.add_summary(session_end(status))
                writer.close()
            except OSError as exc:  # the run's status.json says it all the same
                log.warning("The HParams session end was not written in %s: %s", folder, exc)


def is_smoke_run() -> bool:
    return choices().get("debug") is not None


def log_run_config(loggers: Iterable[Logger], cfg: DictConfig, metrics: list[str] = ()) -> None:
    """Every logger gets the whole flattened config (hparams.yaml; an MLflow or W&B run also the
    group choices) and the config as text; TensorBoard, except for `debug=` smoke runs, also an
    HParams row (`table_params`, `row_name`) and, for a sweep's job, the sweep's columns: its
    swept keys and `metrics`, in their order."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    trackers = [logger for logger in loggers if isinstance(logger, TRACKERS)]
    text = "\n".join("    " + line for line in OmegaConf.to_yaml(cfg, resolve=True).splitlines())
    publish_text(loggers, "config", text)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # Lightning writes it once, with a plain open(): here it is whole
            write_text(Path(logger.log_dir) / "hparams.yaml", yaml.safe_dump(params, sort_keys=False))
        # a tracker's runs table: every key, and the HParams row's group choices (model=dcgan) beside them
        logger.log_hyperparams({**table_params(params, raw), **params} if logger in trackers else params)
        if isinstance(logger, TensorBoardLogger):
            if not is_smoke_run():
                row = table_params(params, raw)
                writer = tensorboard_writer(logger)
                swept = [key for key in dict.fromkeys(source_key(raw, k) for k in swept_keys()) if key in row]
                if swept:
                    writer.add_summary(experiment_summary(swept, list(metrics)))
                writer.add_summary(session_start(row, row_name(cfg.run_dir)))
