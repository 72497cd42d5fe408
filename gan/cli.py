"""`key=value` command lines for the small commands (gan.evaluate, gan.generate)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan.errors import UserError


def parse(argv: list[str], schema: type, usage: str) -> Any:
    """Arguments checked against a dataclass: one clear message for a bad one."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv)))
    except OmegaConfBaseException as exc:
        raise UserError(f"{' '.join(str(exc).split())}. Usage: {usage.strip().splitlines()[0]}") from None


def run(command: Callable[[Any], Any], schema: type, usage: str) -> Any:
    """Parse sys.argv into `schema`, run `command`; a UserError ends the process with its message."""
    try:
        return command(parse(sys.argv[1:], schema, usage))
    except UserError as exc:
        sys.exit(f"error: {exc}")
