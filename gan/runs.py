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


def load_generator(path: str, best: bool = False) -> tuple[nn.Module, DictConfig, str]:
    """The generator of a run folder's last (or best-FID) checkpoint, or of a given .ckpt, in
    eval mode on the CPU."""
    ckpt = resolve_checkpoint(path, "best_fid.ckpt" if best else "last.ckpt")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    if checkpoint.get("config") is None:
        raise UserError(f"{ckpt} holds no run config: it was not written by this project's train.py.")
    cfg = OmegaConf.create(checkpoint["config"])
    generator = instantiate(cfg.model.generator)
    state = checkpoint["state_dict"]
    generator.load_state_dict({k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")})
    return generator.eval(), cfg, ckpt


@torch.no_grad()
def generate(generator: nn.Module, n: int, latent_dim: int, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """n samples in [-1, 1] from a fixed noise (same seed, same samples), on the CPU."""
    noise = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    dtype = next(generator.parameters()).dtype
    return torch.cat([generator(z.to(device, dtype)).float().cpu() for z in noise.split(batch_size)])
