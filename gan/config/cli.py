"""`key=value` command lines for the small commands (gan.evaluate, gan.generate).

The options are a dataclass's fields; their one-line meanings are the comments written beside
them, which `--help` prints with the defaults, so the help cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan.errors import UserError

REQUIRED = "???"  # OmegaConf's mark for a value the command line must give


def program(schema: type) -> str:
    module = schema.__module__
    if module == "__main__":  # run as `python -m gan.<command>`
        module = getattr(sys.modules["__main__"].__spec__, "name", module)
    subcommand = getattr(schema, "SUBCOMMAND", "")  # a command of several (gan.evaluate stats ...)
    return f"python -m {module}{' ' + subcommand if subcommand else ''}"


def usage(schema: type) -> str:
    """`python -m gan.evaluate ckpt=<ckpt> [n=10000] ...`: every option, with its default."""
    options = [f"{f.name}=<{f.name}>" if f.default == REQUIRED else f"[{f.name}={default(f)}]" for f in fields(schema)]
    return f"{program(schema)} {' '.join(options)}"


def default(field) -> str:
    value = field.default_factory() if field.default_factory is not MISSING else field.default
    value = None if value is MISSING else value
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def help_text(schema: type, doc: str) -> str:
    """The usage line, what the command does (its module docstring), and each option's meaning and default."""
    comments = dict(re.findall(r"^\s+(\w+):[^\n#]*#\s*(.+)$", inspect.getsource(schema), re.MULTILINE))
    width = max(len(f.name) for f in fields(schema))
    rows = [f"  {f.name:<{width}}  {comments.get(f.name, '')}" + ("" if f.default == REQUIRED else f" (default: {default(f)})")
            for f in fields(schema)]
    return "\n".join([f"usage: {usage(schema)}", "", doc.strip(), "", "options (key=value):", *rows])


def parse(argv: list[str], schema: type) -> Any:
    """Arguments checked against a dataclass: one clear message for a bad one."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv)))
    except OmegaConfBaseException as exc:
        raise UserError(f"{' '.join(str(exc).split())}. Usage: {usage(schema)} (--help: what each option means)") from None


def run(command: Callable[[Any], Any], schema: type, doc: str) -> Any:
    """Parse sys.argv into `schema`, run `command`; `-h`/`--help` prints the help and exits 0; a
    UserError ends the process with its message."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(help_text(schema, doc))
        sys.exit(0)
    try:
        return command(parse(sys.argv[1:], schema))
    except UserError as exc:
        sys.exit(f"error: {exc}")
