"""Objects from config nodes: a node built with an error that names its key, and each network's
optimizer from the `optimizer` group (its class and shared arguments, then the network's own)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim import Optimizer

from gan.config import CONF
from gan.errors import UserError


def build(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """instantiate(cfg.<key>, **kwargs), with a constructor's refusal (a DCGAN for 30x30 images, a
    GPU trainer without a GPU) as a UserError naming the key."""
    node = OmegaConf.select(cfg, key)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, UserError):  # the constructor's own one-paragraph message
            raise exc.__cause__ from None
        cause = " ".join(str(exc.__cause__ if exc.__cause__ is not None else exc).split())
        hint = ""
        if key == "trainer" and any(word in cause.lower() for word in ("accelerator", "gpu", "cuda", "mps")):
            hint = f" (trainer.accelerator={node.accelerator}: trainer=auto takes a GPU when there is one, else the CPU)"
        raise UserError(f"{key} ({node._target_}) cannot be built from this config: {cause}{hint}") from None


def network_optimizer(node: DictConfig, network: str) -> Callable[..., Optimizer]:
    """One network's optimizer, waiting for its parameters: the `optimizer` group's class with
    every key of the group that it takes, overridden by `optimizer.<network>`."""
    args = OmegaConf.to_container(node, resolve=True)
    optimizer = get_class(args["_target_"])
    shared = {k: v for k, v in args.items() if k in inspect.signature(optimizer).parameters}
    return partial(optimizer, **{**shared, **args[network]})


def compose_train(*overrides: str) -> DictConfig:
    """The training config `python train.py OVERRIDES` would get (without the hydra node); an
    override Hydra cannot apply (an option that does not exist) is a UserError in its words."""
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=list(overrides))
    except HydraException as exc:
        raise UserError(" ".join(str(exc).split())) from None
