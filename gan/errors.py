"""User-facing errors: Hydra prints these as one short message, without a traceback."""

from __future__ import annotations

from typing import Any

from hydra.errors import CompactHydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


class UserError(CompactHydraException):
    """A bad config value, a missing dataset, a run folder already taken: something the user
    fixes, so they get one paragraph naming what is wrong and what is allowed."""


def build(cfg: DictConfig, key: str) -> Any:
    """instantiate(cfg.<key>), with a constructor's refusal (a DCGAN for 30x30 images) as a
    UserError naming the key."""
    node = OmegaConf.select(cfg, key)
    try:
        return instantiate(node)
    except InstantiationException as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise UserError(f"{key} ({node._target_}) cannot be built from this config: {cause}") from None
