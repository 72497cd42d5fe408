"""Finding a run's checkpoint and config, and rebuilding its generator from them."""

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


def balanced_labels(n: int, num_classes: int | None, label: int | None = None) -> torch.Tensor | None:
    """Labels for n samples of a conditional generator: all `label`, or the classes in turn
    (0, 1, ..., 9, 0, 1, ...); None for an unconditional one (which must not be given a label)."""
    if num_classes is None:
        if label is not None:
            raise UserError(f"label={label}: this generator is not conditional (model.conditional=false), so it takes no class.")
        return None
    if label is None:
        return torch.arange(n) % num_classes
    if not 0 <= label < num_classes:
        raise UserError(f"label={label}: this generator knows classes 0 to {num_classes - 1}.")
    return torch.full((n,), label)


@torch.no_grad()
def generate(generator: nn.Module, n: int, seed: int = 0, label: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """n samples in [-1, 1] from a fixed noise (same seed, same samples), on the CPU; a
    conditional generator gets `balanced_labels`."""
    noise = generator.draw_noise(n, torch.Generator().manual_seed(seed))
    labels = balanced_labels(n, generator.num_classes, label)
    parameter = next(generator.parameters())
    chunks = []
    for i in range(0, n, batch_size):
        y = None if labels is None else labels[i : i + batch_size].to(parameter.device)
        chunks.append(generator(noise[i : i + batch_size].to(parameter.device, parameter.dtype), y).float().cpu())
    return torch.cat(chunks)
