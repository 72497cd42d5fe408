"""A run's checkpoints: finding one (a file, or a run folder's last or best), and rebuilding its generator."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan.errors import UserError


def resolve_checkpoint(path: str | None, name: str = "last.ckpt") -> str | None:
    """A checkpoint file, or a run folder (its checkpoints/<name>)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / name
    if not p.is_file():
        raise UserError(f"{path}: no checkpoint there (give a .ckpt file or a run folder holding checkpoints/{name}).")
    return str(p)


def load_generator(path: str, best: bool = False, ema: bool = True) -> tuple[nn.Module, DictConfig, str]:
    """The generator of a run folder's last (or best-FID) checkpoint, or of a given .ckpt, in
    eval mode on the CPU: the weight average when the run kept one (`gan.ema_decay`) and `ema`."""
    ckpt = resolve_checkpoint(path, "best_fid.ckpt" if best else "last.ckpt")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    if checkpoint.get("config") is None:
        raise UserError(f"{ckpt} holds no run config: it was not written by this project's train.py.")
    cfg = OmegaConf.create(checkpoint["config"])
    generator = instantiate(cfg.model.generator)
    state = checkpoint["state_dict"]
    prefix = "generator_ema.module." if ema and any(k.startswith("generator_ema.") for k in state) else "generator."
    generator.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    return generator.eval(), cfg, ckpt
