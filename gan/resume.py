"""What a resume may change. The model and the data's shape are the checkpoint's: a change there
is refused (the weights would not fit, or would mean something else). Everything else is this
config's and applies: the step budget, logging, sampling, evaluation and checkpoint intervals,
and the optimizers' hyper-parameters (GAN.on_load_checkpoint writes them over the saved ones).
One line at start says which values changed."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan.errors import UserError
from gan.hparams import flatten

log = logging.getLogger(__name__)
FIXED = ("model.", "data.image_shape", "data.num_classes", "gan.ema_decay")  # the weights' shape and meaning
IGNORED = ("run_dir", "ckpt_path")  # differ on every resume by design


def changes(cfg: DictConfig, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (the checkpoint's value, this config's) for every resolved value that differs."""
    old = OmegaConf.create(saved)
    old.run_dir = cfg.run_dir  # the old folder's value came from Hydra, which is not running it
    before = flatten(OmegaConf.to_container(old, resolve=True))
    now = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k) and not k.startswith(IGNORED)}


def check_resume(cfg: DictConfig, checkpoint: dict[str, Any], module: nn.Module, path: str) -> None:
    """Refuse a resume that changes the model (config or tensor shapes); say what else changed."""
    changed = changes(cfg, checkpoint["config"])
    fixed = {k: v for k, v in changed.items() if k.startswith(FIXED)}
    if fixed:
        listed = ", ".join(f"{k}={new} (the checkpoint has {old})" for k, (old, new) in fixed.items())
        raise UserError(f"ckpt_path={path}: a resume keeps the model and the data's shape, and this config changes "
                        f"them: {listed}. Drop those overrides, or start a new run without ckpt_path.")
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if shapes != saved:
        odd = sorted(k for k in set(shapes) | set(saved) if shapes.get(k) != saved.get(k))[:3]
        raise UserError(f"ckpt_path={path}: its weights do not fit this model ({', '.join(odd)}: "
                        f"{[saved.get(k) for k in odd]} in the checkpoint, {[shapes.get(k) for k in odd]} here). "
                        f"Resume with the config it was trained with.")
    applied = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()) or "none"
    log.info("Resuming from %s at iteration %s; this config's values apply where they changed: %s.",
             path, checkpoint["global_step"], applied)
