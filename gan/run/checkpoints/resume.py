"""What a resume may change. The model and the data's shape are the checkpoint's: a change there
is refused (the weights would not fit, or would mean something else). Everything else is this
config's and applies: the step budget, logging, sampling, evaluation and checkpoint intervals,
and the optimizers' hyper-parameters (saving.CheckpointContents writes them over the saved ones).
One line at start says which values changed. A requeued SLURM job resumes its own folder."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from gan.config import flatten
from gan.config.untrusted import FileConfig, shown
from gan.errors import UserError
from gan.run.checkpoints.files import mismatch
from gan.run.ranks import requeued_into, slurm_job

log = logging.getLogger(__name__)
FIXED = ("model.", "data.image_shape", "data.num_classes", "gan.ema_decay", "gan.ema_kimg")  # the weights' shape and meaning
IGNORED = ("run_dir", "ckpt_path")  # differ on every resume by design (as does every path under run_dir)


def changes(cfg: DictConfig, saved: FileConfig) -> dict[str, tuple[Any, Any]]:
    """key -> (the checkpoint's value, this config's) for every resolved value that differs (the
    checkpoint's as it stored them: nothing of a file is resolved here)."""
    before = flatten(saved.values)
    now = flatten(OmegaConf.to_container(cfg, resolve=True))
    in_run_dir = {k for k, v in flatten(OmegaConf.to_container(cfg, resolve=False)).items() if "${run_dir}" in str(v)}
    before = {**{k: "null" for k, v in now.items() if v == "null"}, **before}  # a key added since, off: what the run had
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)
            and not k.startswith(IGNORED) and k not in in_run_dir and k not in saved.unknown}


def check_resume(cfg: DictConfig, checkpoint: dict[str, Any], saved: FileConfig, module: nn.Module, path: str) -> None:
    """Refuse a resume that changes the model (config or tensor shapes); say what else changed."""
    changed = changes(cfg, saved)
    fixed = {k: v for k, v in changed.items() if k.startswith(FIXED)}
    if fixed:
        listed = ", ".join(f"{k}={new} (the checkpoint has {shown(old)})" for k, (old, new) in fixed.items())
        raise UserError(f"ckpt_path={path}: a resume keeps the model and the data's shape, and this config changes "
                        f"them: {listed}. Drop those overrides, or start a new run without ckpt_path.")
    if odd := mismatch({k: tuple(v.shape) for k, v in module.state_dict().items()}, checkpoint["state_dict"]):
        raise UserError(f"ckpt_path={path}: its weights do not fit this model ({odd}). "
                        f"Resume with the config it was trained with.")
    applied = ", ".join(f"{k} {shown(old)} -> {new}" for k, (old, new) in changed.items()) or "none"
    log.info("Resuming from %s at iteration %s; this config's values apply where they changed: %s.",
             path, checkpoint["global_step"], applied)


def continue_after_requeue(cfg: DictConfig) -> None:
    """A requeued SLURM job continues its own run from the folder's newest checkpoint."""
    if cfg.ckpt_path is None and requeued_into(cfg.run_dir):
        log.warning("Requeued SLURM job %s: continuing from the newest checkpoint in %s.", slurm_job(), cfg.run_dir)
        with open_dict(cfg):
            cfg.ckpt_path = cfg.run_dir
