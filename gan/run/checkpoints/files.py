"""A run's checkpoints: finding one (a file, or a run folder's last or best), reading it as data
only, and rebuilding its generator from what the project defines (gan/config/untrusted.py)."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from gan.config.untrusted import CONF, FileConfig, file_config, offered, rebuild, shown
from gan.errors import UserError

log = logging.getLogger(__name__)
SKIPPED: set[Path] = set()
SAFE_TORCH = (2, 10)  # torch's weights_only loader had code-execution holes before (GHSA-53q9-r3pm-6pq6, GHSA-63cw-57p8-fm3p)


def resolve_checkpoint(path: str | None, name: str = "last.ckpt") -> str | None:
    """A checkpoint file, or a run folder: its checkpoints/<name>, where "last.ckpt" means the
    newest clean state that reads (last.ckpt, or a step_NNNNNN.ckpt past it), each file opened
    to see which iteration it holds, not guessed from its name; one that does not read is
    skipped with a log line. on_exception.ckpt, which may fall mid-iteration, is only used when named."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir() and name == "last.ckpt":
        found = readable_checkpoints(p / "checkpoints")
        if found:
            return str(found[0][0])
        p = p / "checkpoints" / name
    elif p.is_dir():
        p = p / "checkpoints" / name
    if not p.is_file():
        raise UserError(f"{path}: no checkpoint there (give a .ckpt file or a run folder holding checkpoints/{name}).")
    return str(p)


def readable_checkpoints(folder: Path) -> list[tuple[Path, int]]:
    """(file, iteration) of a checkpoints folder's clean states that read (last.ckpt and
    step_NNNNNN.ckpt), newest first, last.ckpt first on a tie."""
    found = []
    for f in sorted(folder.glob("step_*.ckpt")) + [folder / "last.ckpt"]:
        if f.is_file():
            step = saved_step(f)
            if step < 0 and f not in SKIPPED:
                SKIPPED.add(f)  # said once, though the config check and the run both look
                log.warning("Skipping %s: it does not read as a checkpoint (cut short or damaged).", f)
            elif step >= 0:
                found.append((f, step))
    return sorted(found, key=lambda item: (item[1], item[0].name == "last.ckpt"), reverse=True)


def saved_step(path: Path) -> int:
    """The iteration a checkpoint holds, read without loading its tensors (-1: unreadable)."""
    try:
        return int(read(path, mmap=True)["global_step"])
    except Exception:
        return -1


def read(path: str | Path, mmap: bool = False) -> Any:
    """torch.load of tensors and plain data only, on a torch whose loader holds to that."""
    if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) < SAFE_TORCH:
        raise UserError(f"torch {torch.__version__} cannot load a checkpoint safely: its weights_only loader lets a "
                        f"crafted file run code (fixed in torch {'.'.join(map(str, SAFE_TORCH))}). Upgrade torch.")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_checkpoint(path: str, conf_dirs: tuple[Path, ...] = (CONF,), mmap: bool = False) -> tuple[dict[str, Any], FileConfig]:
    """A checkpoint's contents and its run's config, read without running any of its code:
    `weights_only=True` takes tensors and plain data only, which is all this project writes, and
    the config is taken as data (gan/config/untrusted.py: nothing resolved, nothing named but what the
    config folders offer). Files from elsewhere are untrusted; one that holds anything else, or
    is no checkpoint at all, is a UserError. `mmap`: the tensors stay on disk (a quick check)."""
    try:
        checkpoint = read(path, mmap)
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)", str(exc))
        if unsafe is None:  # not a pickle this loader understands: a text file, a foreign format
            raise UserError(f"{path}: not a readable checkpoint (not a PyTorch checkpoint file). "
                            f"Give another .ckpt or a run folder.") from None
        raise UserError(f"{path}: refused: it holds a Python object ({shown(unsafe.group(1))}) besides tensors and plain data, "
                        f"and loading it could run code. Only checkpoints written by this project load here.") from None
    except Exception as exc:  # truncated zip (RuntimeError), empty (EOFError), text (KeyError, IndexError), ...
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                        f"the file may be truncated or corrupt. Give another .ckpt or a run folder.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path}: not a training checkpoint (no state_dict in it).")
    return checkpoint, file_config(checkpoint, str(path), conf_dirs)


def mismatch(shapes: dict[str, tuple[int, ...]], weights: dict[str, Any]) -> str:
    """'' when `weights` has a tensor of each shape a module expects, else the first keys that differ."""
    saved = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in weights.items()}
    if shapes == saved:
        return ""
    odd = sorted(k for k in set(shapes) | set(saved) if shapes.get(k) != saved.get(k))[:3]
    return f"{', '.join(map(shown, odd))}: {[saved.get(k) for k in odd]} saved, {[shapes.get(k) for k in odd]} expected"


@dataclass
class Trained:
    """A trained generator read back (from a checkpoint, or a generator exported as safetensors),
    with what the tools that use it need to say about it."""

    generator: nn.Module  # in eval mode, on the CPU
    config: FileConfig  # the run's config (an export's: its generator node)
    path: str  # the file it came from
    step: int  # the iteration it holds (-1: not known)
    class_names: list[str] | None  # a conditional generator's classes, in label order (None: unconditional)
    ema: bool  # the weight average (gan.ema_decay), rather than the trained weights


def load_generator(path: str, best: bool = False, ema: bool = True,
                   conf_dirs: tuple[Path, ...] = (CONF,)) -> tuple[nn.Module, FileConfig, str]:
    """The generator of a run folder's last (or best-FID) checkpoint, or of a given .ckpt (see `load_trained`)."""
    trained = load_trained(path, best, ema, conf_dirs)
    return trained.generator, trained.config, trained.path


def load_trained(path: str, best: bool = False, ema: bool = True, conf_dirs: tuple[Path, ...] = (CONF,)) -> Trained:
    """The generator of a run folder's last (or best-FID) checkpoint, of a given .ckpt, or of a
    .safetensors written by gan.export, in eval mode on the CPU: the weight average when the run
    kept one (`gan.ema_decay`) and `ema`. It is sized on the meta device first, so a config that
    asks for more than its weights hold is refused before any memory is taken."""
    if str(path).endswith(".safetensors"):
        from gan.run.checkpoints.exported import load_safetensors

        return load_safetensors(path, conf_dirs)
    ckpt = resolve_checkpoint(path, "best_fid.ckpt" if best else "last.ckpt")
    checkpoint, config = load_checkpoint(ckpt, conf_dirs)
    state = checkpoint["state_dict"]
    averaged = ema and any(k.startswith("generator_ema.") for k in state)
    prefix = "generator_ema.module." if averaged else "generator."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    generator = generator_of(config, weights, ckpt)
    step = checkpoint.get("global_step")
    return Trained(generator, config, ckpt, step if isinstance(step, int) else -1,
                   class_names_of(checkpoint, config, generator.num_classes), averaged)


def generator_of(config: FileConfig, weights: dict[str, Any], source: str) -> nn.Module:
    """The generator `config` describes (model.generator), holding `weights`, in eval mode."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in rebuild(config, "model.generator").state_dict().items()}
    if odd := mismatch(shapes, weights):
        raise UserError(f"{source}: its generator weights do not fit the network its config describes ({odd}).")
    generator = rebuild(config, "model.generator")
    generator.load_state_dict(weights)
    return generator.eval()


def class_names_of(checkpoint: Mapping, config: FileConfig, num_classes: int | None) -> list[str] | None:
    """A conditional generator's class names: as the checkpoint keeps them, else as its dataset
    class names them (MNIST's, CIFAR-10's), else the label numbers."""
    if num_classes is None:
        return None
    kept = checkpoint.get("class_names")
    if isinstance(kept, list) and len(kept) == num_classes and all(isinstance(n, str) for n in kept):
        return [shown(name, 60) for name in kept]
    target = config.values.get("data", {}).get("_target_") if isinstance(config.values.get("data"), Mapping) else None
    if isinstance(target, str) and target.startswith("gan.data."):  # checked by file_config: one of conf/'s
        from hydra.utils import get_object

        named = getattr(get_object(target), "classes", None)
        if isinstance(named, (list, tuple)) and len(named) == num_classes:
            return [str(name) for name in named]
    return [str(i) for i in range(num_classes)]


def local_root(target: str, dirs: tuple[Path, ...]) -> str | None:
    """This machine's data root for a data module: the `root` of the conf/data option that builds
    it, resolved here (its own `${oc.env:GAN_DATA_DIR,data}`: a file of ours, not the checkpoint's)."""
    node = offered(dirs).written.get(("data", target))
    return None if node is None else OmegaConf.create({"root": node.get("root")}).root


def datamodule_of(config: FileConfig, data_root: str | None, dirs: tuple[Path, ...]):
    """The run's data module, rebuilt from its checkpoint. Where its files are read from is this
    machine's choice: `data_root` when given; else the folder the run read them from, when it
    exists here; else this machine's data root (conf/data's own), where a missing dataset is
    downloaded. A checkpoint never names a place to write."""
    from gan.config.signatures import parameters

    if "data" not in config.values:
        raise UserError(f"{config.source}: it holds a generator alone, without the data it was trained on.")
    target = config.node("data._target_")
    saved = None if "data.root" in config.unknown else config.values["data"].get("root")
    if data_root is not None:
        root, own = data_root, True
    elif saved is not None and Path(saved).expanduser().is_dir():
        root, own = saved, False
    else:
        root, own = local_root(target, dirs) if isinstance(target, str) else None, True
    if root is None:
        raise UserError(f"{config.source} was trained on data.root={saved}, which is not a folder here: give "
                        f"data_root=<the folder of its images>.")
    given = {"root": root}
    if "download" in parameters(target):
        given["download"] = own and bool(config.values["data"].get("download", True))
    return rebuild(config, "data", **given)
