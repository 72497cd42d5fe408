"""Every composed config is checked before anything is built, against the code that will take it.

Hydra already refuses unknown command-line keys and unknown group options; this catches values
of the wrong type or range (`model.latent_dim=abc`, `data.batch_size=0`, `trainer.accelerator=tpu9`)
and keys added with `+`, and turns them into one short message.

There is no second copy of the config here. What a key may hold is read from where it goes:
- a key of a `_target_` node is a parameter of that class: the project's own classes type their
  parameters (`batch_size: PosInt`, gan/config/constraints.py), and those annotations are the check;
  a library class (torch optimizers, the Lightning Trainer, loggers) is checked for the
  parameter's existence, plus the few rules this project adds on top (gan/config/signatures.py reads both);
- the `gan` node holds the update rule's parameters of `GAN.__init__`, and the top-level keys
  no constructor takes are the fields of `gan.config.run_options.RunOptions`;
- a key that only feeds others through `${...}` (`model.latent_dim`, `sample_every`, `seed`) is
  known because something reads it, and its value is checked where it arrives; the message names
  it as the user typed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gan.augment import problems as augment_problems
from gan.config import HYDRA_KEYS
from gan.config.hydra_runtime import config_folders, in_sweep, launcher
from gan.config.run_options import RunOptions
from gan.config.signatures import Parameters, check, parameters
from gan.engine.distributed import problems as distributed_problems
from gan.engine.execution import precision_problems
from gan.errors import UserError, stopping_hydra
from gan.module import GAN, ema_problems
from gan.run.checkpoints.files import load_checkpoint, resolve_checkpoint
from gan.run.trackers import server_problems
from gan.schedules import Schedule, schedule_problems

REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")  # ${a.b.c}: a key (resolvers have a colon)


def references(raw: Any) -> set[str]:
    """Every key that some value refers to with ${key}, anywhere in the unresolved config."""
    if isinstance(raw, Mapping):
        return set().union(*(references(v) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(references(v) for v in raw)) if raw else set()
    return set(REFERENCE.findall(raw)) if isinstance(raw, str) else set()


def plain_nodes() -> dict[str, Parameters]:
    """Nodes without a `_target_` whose keys are a function's parameters."""
    rule = ("n_critic", "d_update", "fakes_mode", "ema_decay", "ema_kimg", "ema_rampup", "cuda_graph")
    update_rule = Parameters({k: v for k, v in parameters(GAN).items() if k in rule})
    return {"": parameters(RunOptions), "gan": update_rule, "schedule": parameters(Schedule)}


def problems(resolved: Mapping, raw: Mapping, known: set[str], plain: dict[str, Parameters], path: str = "",
             of: str | None = None) -> Iterator[tuple[str, Any, str]]:
    """(key, value, what is wrong) for each bad key below `path`; `of`: the class whose arguments
    a node without `_target_` holds (optimizer.generator: the optimizer group's class)."""
    target = resolved.get("_target_") or of
    takes = parameters(target) if target else plain.get(path)
    for key, value in resolved.items():
        where = f"{path}.{key}" if path else key
        if key in HYDRA_KEYS:
            continue
        if isinstance(value, Mapping) and "_target_" in value:  # an object built inside another (trainer.strategy)
            yield from problems(value, raw[key], known, plain, where)
        elif takes is not None and key in takes:
            yield from check(where, value, takes[key][0])
        elif isinstance(value, Mapping):
            # optimizer.generator / .discriminator: one network's own arguments of the group's class
            yield from problems(value, raw[key], known, plain, where, target if path == "optimizer" else None)
        elif where not in known and not (takes is not None and takes.open):
            what = f"an argument of {target}, nor read by another key" if target else "a known key"
            yield where, value, f"not {what} (check its spelling; conf/ lists the keys of each group)"
    for key, (_, required) in (takes or {}).items():
        if required and key not in resolved and not of and not resolved.get("_partial_"):
            yield (f"{path}.{key}" if path else key), None, "missing"


def _source(raw: Any, key: str) -> str | None:
    """The key a value came through, when it is exactly `${that.key}`."""
    node = raw
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    match = REFERENCE.fullmatch(node) if isinstance(node, str) else None
    return match.group(1) if match else None


class ValidateFirst(Callback):
    """Hydra callback: check a single run's config before Hydra creates its folder, so a refused
    config leaves nothing behind. (A sweep's jobs are checked as each starts; a refused job's
    folder says `failed` in status.json.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with stopping_hydra():
            task = task_config(config)
            validate(task)
            if task.ckpt_path is not None:  # an unsafe or broken checkpoint too (read as data, tensors left on disk)
                load_checkpoint(resolve_checkpoint(task.ckpt_path), config_folders(config.hydra), mmap=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep whose jobs cannot start their processes is refused before any job starts."""
        lines = distributed_problems(OmegaConf.to_container(task_config(config), resolve=True), multirun=True,
                                     launcher=config.hydra.launcher.get("_target_"))
        if lines:
            with stopping_hydra():
                raise UserError(f"Invalid config: {'; '.join(lines)}.")


def task_config(config: DictConfig) -> DictConfig:
    """The job's config as Hydra hands it to callbacks, without the hydra node."""
    task = OmegaConf.create({k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"})
    task.run_dir = "<the run folder>"  # ${hydra:runtime.output_dir} exists only once Hydra made it
    return task


def validate(cfg: DictConfig) -> None:
    """Raise UserError naming every bad key and what it allows."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    lines: list[str] = []
    for key, value, message in problems(resolved, raw, references(raw), plain_nodes()):
        if message.startswith("not "):
            found = [f"`{key}` is {message}"]
        elif message == "missing":
            found = [f"`{key}` is missing"]
        else:  # named as typed first, then where it arrived
            source = _source(raw, key)
            found = [f"`{source}={value!r}`: {message}"] if source else []
            found.append(f"`{key}={value!r}`" + (f" (from ${{{source}}})" if source else "") + f": {message}")
        lines += [line for line in found if line not in lines]
    if not lines:  # the keys that must fit together, once each is valid alone
        gan = resolved.get("gan") or {}
        lines += (augment_problems(resolved) + ema_problems(gan.get("ema_decay"), gan.get("ema_kimg"), gan.get("ema_rampup"))
                  + schedule_problems(resolved) + distributed_problems(resolved, in_sweep(), launcher().get("_target_"))
                  + precision_problems(resolved) + server_problems(resolved))
    if lines:
        raise UserError(f"Invalid config: {'; '.join(lines)}. Fix the value on the command line or in conf/.")
