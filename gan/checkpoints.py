"""A run's checkpoints: finding one (a file, or a run folder's last or best), and rebuilding its generator."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan.errors import UserError


def resolve_checkpoint(path: str | None, name: str = "last.ckpt") -> str | None:
    """A checkpoint file, or a run folder: its checkpoints/<name>, where "last.ckpt" means the
    newest clean state (last.ckpt, or a step_NNNNNN.ckpt past it). on_exception.ckpt, which may
    fall mid-iteration, is only used when named."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        folder, p = p / "checkpoints", p / "checkpoints" / name
        if name == "last.ckpt":
            steps = {f: int(f.stem.removeprefix("step_")) for f in folder.glob("step_*.ckpt") if f.stem[5:].isdigit()}
            if p.is_file():
                steps[p] = saved_step(p)
            p = max(steps, key=lambda f: (steps[f], f.name == name), default=p)  # last.ckpt on a tie
    if not p.is_file():
        raise UserError(f"{path}: no checkpoint there (give a .ckpt file or a run folder holding checkpoints/{name}).")
    return str(p)


def saved_step(path: Path) -> int:
    """The iteration a checkpoint holds, read without loading its tensors (-1: unreadable)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:
        return -1


def load_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint's contents, read without running any of its code: `weights_only=True` takes
    tensors and plain data only, which is all this project writes. Files from elsewhere are
    untrusted; one that holds anything else, or is no checkpoint at all, is a UserError."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)", str(exc))
        if unsafe is None:  # not a pickle this loader understands: a text file, a foreign format
            raise UserError(f"{path}: not a readable checkpoint (not a PyTorch checkpoint file). "
                            f"Give another .ckpt or a run folder.") from None
        raise UserError(f"{path}: refused: it holds a Python object ({unsafe.group(1)}) besides tensors and plain data, "
                        f"and loading it could run code. Only checkpoints written by this project load here.") from None
    except Exception as exc:  # truncated zip (RuntimeError), empty (EOFError), text (KeyError, IndexError), ...
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                        f"the file may be truncated or corrupt. Give another .ckpt or a run folder.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path}: not a training checkpoint (no state_dict in it).")
    if checkpoint.get("config") is None:
        raise UserError(f"{path} holds no run config: it was not written by this project's train.py.")
    return checkpoint


def load_generator(path: str, best: bool = False, ema: bool = True) -> tuple[nn.Module, DictConfig, str]:
    """The generator of a run folder's last (or best-FID) checkpoint, or of a given .ckpt, in
    eval mode on the CPU: the weight average when the run kept one (`gan.ema_decay`) and `ema`."""
    ckpt = resolve_checkpoint(path, "best_fid.ckpt" if best else "last.ckpt")
    checkpoint = load_checkpoint(ckpt)
    cfg = OmegaConf.create(checkpoint["config"])
    generator = instantiate(cfg.model.generator)
    state = checkpoint["state_dict"]
    prefix = "generator_ema.module." if ema and any(k.startswith("generator_ema.") for k in state) else "generator."
    generator.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    return generator.eval(), cfg, ckpt
