"""Files from elsewhere are data, never a program.

A checkpoint carries the config of the run that wrote it, and gan.generate, gan.evaluate and a
resume read it back. Checkpoints are what people share ("here is my trained model"), so what a
file says is taken as plain data, and the objects it describes are rebuilt only from what the
project itself defines:

- **Nothing in it is resolved.** A checkpoint stores its config resolved (`resolved_config`)
  beside the unresolved one kept for the record (`config`); an interpolation left in the resolved
  one is refused. An older checkpoint holds only the unresolved config: its `${key}` references
  are followed, and a value only a resolver could give (`${oc.env:...}`, the project's own) is
  left unknown. No resolver runs.
- **Nothing in it is built but what conf/ offers.** Every `_target_` at or below a rebuilt group
  (`REBUILT`) must be one that an option of conf/ puts at that very key, and Hydra's other keys
  (`_partial_`, `_args_`, ...) appear only where conf/ uses them there. The list is read off the
  YAML files (`offered`), so a new option is allowed by being written. Every argument must be a
  parameter of its class with a value of its type (gan/config/signatures.py). All of this is checked
  before anything is imported or called, and the objects are built here: Hydra's `instantiate`
  would resolve strings and call whatever a node names.

YAML files read back from run and sweep folders (`.hydra/*.yaml`) are parsed as plain data too
(`read_yaml`): no interpolation in them is ever resolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml

from gan.config import CONF, HYDRA_KEYS
from gan.errors import UserError

REBUILT = ("model", "data", "loss", "optimizer")  # the groups whose nodes a config from a file may describe
BUILT = ("model", "data")  # those a command builds from a file (gan.evaluate, gan.generate): their arguments are checked too
PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")
INTERPOLATION = re.compile(r"\$\{")
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")  # ${a.b.c}: another key of the same config
RESOLVER = re.compile(r"\$\{\s*([\w.]+)\s*:")  # ${oc.env:...}: the resolver's name


def read_yaml(path: Path) -> Any:
    """A YAML file as plain data (dicts, lists, strings, numbers): `${...}` stays text."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not a readable YAML file ({type(exc).__name__}: {shown(str(exc), 160)}).") from None


def shown(value: Any, limit: int = 80) -> str:
    """A value from a file as a message may print it: no control characters, no screenful."""
    text = value if isinstance(value, str) else repr(value)
    text = ascii(text)[1:-1] if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Offer:
    """What conf/ builds at one key: its classes, and the Hydra keys besides `_target_` it sets there."""

    targets: frozenset[str]
    keys: frozenset[str]


@dataclass(frozen=True)
class Offers:
    """What the options of the `REBUILT` groups put where: the objects, the values that name a
    resolver (`data.root: ${oc.env:GAN_DATA_DIR,data}`), and each object's node as the first option
    that builds it writes it ((key, target) -> node), all as written."""

    nodes: dict[str, Offer]
    resolved: dict[str, frozenset[str]]
    written: dict[tuple[str, str], Mapping]

    def at(self, key: str) -> Offer:
        return self.nodes.get(key, Offer(frozenset(), frozenset()))


def package(path: Path, conf: Path) -> str:
    """Where a config file's keys land: its `# @package` header, else its group (Hydra's default)."""
    group = ".".join(path.relative_to(conf).parent.parts)
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if match := PACKAGE.match(line):
            name = match.group(1)
            return "" if name == "_global_" else group if name == "_group_" else name
    return group


def nodes(value: Any, key: str) -> Iterator[tuple[str, Mapping]]:
    """(key, node) for every mapping at or below `value` (list items share their list's key)."""
    if isinstance(value, Mapping):
        yield key, value
        for name, child in value.items():
            yield from nodes(child, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for child in value:
            yield from nodes(child, key)


@cache
def offered(conf_dirs: tuple[Path, ...] = (CONF,)) -> Offers:
    """What the options of the `REBUILT` groups put where, read off every YAML file of the config
    folders (the project's conf/, and any the user composes from)."""
    targets: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    resolved: dict[str, set[str]] = {}
    written: dict[tuple[str, str], Mapping] = {}
    for conf in conf_dirs:
        for path in sorted(Path(conf).rglob("*.yaml")):
            content = read_yaml(path)
            where = package(path, Path(conf))
            for key, node in nodes(content, where):
                if key.split(".")[0] in REBUILT and "_target_" in node:
                    targets.setdefault(key, set()).add(str(node["_target_"]))
                    keys.setdefault(key, set()).update(k for k in node if k in HYDRA_KEYS and k != "_target_")
                    written.setdefault((key, str(node["_target_"])), node)
            for key, text in strings(content, where):
                if key.split(".")[0] in REBUILT and RESOLVER.search(text):
                    resolved.setdefault(key, set()).add(text)
    return Offers({key: Offer(frozenset(found), frozenset(keys[key])) for key, found in targets.items()},
                  {key: frozenset(texts) for key, texts in resolved.items()}, written)


@dataclass(frozen=True)
class FileConfig:
    """A run's config read back from a file: plain resolved values, and the keys whose value only
    a resolver could give (an older checkpoint's `${oc.env:...}`), which are unknown."""

    values: dict
    source: str  # the file, for messages
    unknown: frozenset[str] = field(default_factory=frozenset)

    def node(self, key: str) -> Any:
        value: Any = self.values
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise UserError(f"{self.source}: its config has no `{key}`, so it cannot be rebuilt: it was not "
                                f"written by this project's train.py.")
            value = value[part]
        return value


def file_config(checkpoint: Mapping, source: str, conf_dirs: tuple[Path, ...] = (CONF,)) -> FileConfig:
    """The config a checkpoint holds, resolved without running anything and checked against what
    the config folders offer (see the module docstring): what `rebuild` may build."""
    config = unchecked(checkpoint, source, conf_dirs)
    check(config, conf_dirs)
    return config


def unchecked(checkpoint: Mapping, source: str, conf_dirs: tuple[Path, ...]) -> FileConfig:
    resolved = checkpoint.get("resolved_config")
    if resolved is not None:
        if not isinstance(resolved, dict):
            raise UserError(f"{source}: its resolved_config is not a config (a {type(resolved).__name__}).")
        for key, value in strings(resolved, ""):
            if INTERPOLATION.search(value):
                resolver = RESOLVER.search(value)
                what = f"the resolver `{resolver.group(1)}`" if resolver else "an interpolation"
                raise UserError(f"{source}: refused: `{key}={shown(value)}` names {what} in the checkpoint's resolved "
                                f"config, which holds none, and resolving it could run code. Only checkpoints "
                                f"written by this project load here.")
        return FileConfig(resolved, source)
    config = checkpoint.get("config")
    if not isinstance(config, dict):
        raise UserError(f"{source} holds no run config: it was not written by this project's train.py.")
    return references_only(config, source, offered(conf_dirs))


def strings(value: Any, key: str, names: bool = True) -> Iterator[tuple[str, str]]:
    """(key, text) for every string below `value`; `names`: the keys of mappings too."""
    if isinstance(value, Mapping):
        for name, child in value.items():
            where = f"{key}.{name}" if key else str(name)
            if names and isinstance(name, str):
                yield where, name
            yield from strings(child, where, names)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from strings(child, f"{key}.{i}", names)
    elif isinstance(value, str):
        yield key, value


def plain_references(config: dict, text: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether `text` is built from `${key}` references alone, each to a value, or a list of
    values, that resolves the same way: no resolver, and no nesting that could multiply (a
    list of references to lists of references, ... would grow exponentially when resolved)."""
    if REFERENCE.sub("", text).find("${") >= 0:  # a resolver, or an interpolation inside another
        return False
    for key in REFERENCE.findall(text):
        target = lookup(config, key)
        items = target if isinstance(target, list) else [target]
        if key in seen or isinstance(target, Mapping) or any(isinstance(item, (Mapping, list)) for item in items):
            return False
        if not all(plain_references(config, item, seen | {key}) for item in items if isinstance(item, str)):
            return False
        if isinstance(target, list) and any(isinstance(lookup(config, k), list) for item in items if isinstance(item, str)
                                            for k in REFERENCE.findall(item)):
            return False
    return True


def references_only(config: dict, source: str, offers: Offers) -> FileConfig:
    """An unresolved config with its `${key}` references followed and nothing else run: a value
    that names a resolver, or is built from one, becomes unknown. In a rebuilt group only the
    resolvers conf/ itself writes at that key may appear (an older checkpoint's data root)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    dropped = {key for key, text in strings(config, "", names=False)
               if INTERPOLATION.search(text) and not plain_references(config, text)}
    for key in sorted(dropped):
        text = lookup(config, key)
        if key.split(".")[0] in REBUILT and text not in offers.resolved.get(key, ()):
            resolver = RESOLVER.search(str(text))
            what = f"the resolver `{resolver.group(1)}`" if resolver else "an interpolation conf/ never writes"
            raise UserError(f"{source}: refused: `{key}={shown(text)}` names {what}, and resolving it could run code "
                            f"(conf/ writes no such value at {key}). Only checkpoints written by this project load here.")
    plain = drop(config, "", dropped)
    try:
        values = OmegaConf.to_container(OmegaConf.create(plain), resolve=True)  # references only: every resolver was dropped
    except OmegaConfBaseException as exc:
        raise UserError(f"{source}: its config does not resolve ({shown(' '.join(str(exc).split()), 160)}).") from None
    unknown = {key for key, text in strings(config, "", names=False)
               if INTERPOLATION.search(text) and lookup(values, key) is None}
    return FileConfig(values, source, frozenset(unknown | dropped))


def drop(value: Any, key: str, dropped: set[str]) -> Any:
    if isinstance(value, Mapping):
        return {name: drop(child, f"{key}.{name}" if key else str(name), dropped) for name, child in value.items()
                if (f"{key}.{name}" if key else str(name)) not in dropped}
    if isinstance(value, list):
        return [None if f"{key}.{i}" in dropped else drop(child, f"{key}.{i}", dropped) for i, child in enumerate(value)]
    return None if key in dropped else value


def lookup(values: Any, key: str) -> Any:
    for part in key.split("."):
        if isinstance(values, Mapping):
            values = values.get(part)
        elif isinstance(values, list) and part.isdigit() and int(part) < len(values):
            values = values[int(part)]
        else:
            return None
    return values


def check(config: FileConfig, conf_dirs: tuple[Path, ...] = (CONF,)) -> None:
    """Refuse, naming the file, the key and the target, any `_target_` in a rebuilt group that
    conf/ does not offer at that key, any other Hydra key where conf/ sets none, and in what is
    built from a file (`BUILT`) any argument of a class that is not one of its parameters or not
    of its type."""
    offers = offered(conf_dirs)
    for group in REBUILT:
        for key, node in nodes(config.values.get(group), group):
            offer = offers.at(key)
            if "_target_" in node and node["_target_"] not in offer.targets:
                allowed = ", ".join(sorted(offer.targets)) or "nothing: conf/ builds no object there"
                raise UserError(f"{config.source}: refused: `{key}._target_={shown(node['_target_'])}` is not what conf/ "
                                f"offers at {key} ({allowed}), and building it could run code. Only the project's "
                                f"own networks, data, losses and optimizers are rebuilt from a file (your own options: "
                                f"name their config folder, config_dir= or train.py's --config-dir).")
            for name in node:
                if isinstance(name, str) and name.startswith("_") and name.endswith("_") and name != "_target_" \
                        and name not in offer.keys:
                    of = f" (a node of {shown(node['_target_'])})" if "_target_" in node else ""
                    raise UserError(f"{config.source}: refused: `{key}.{shown(name)}`{of} is not a key conf/ sets at "
                                    f"{key}, and Hydra would act on it. Only checkpoints written by this project load here.")
            if group in BUILT and str(node.get("_target_")).startswith("gan."):  # typed parameters (not a library's)
                check_arguments(config, key, node)


def check_arguments(config: FileConfig, key: str, node: Mapping) -> None:
    from gan.config.signatures import check as type_errors
    from gan.config.signatures import parameters

    target = node["_target_"]  # offered there: imported by conf/'s own choice
    takes = parameters(target)
    for name, value in node.items():
        where = f"{key}.{name}"
        if name in HYDRA_KEYS or where in config.unknown or (isinstance(value, Mapping) and "_target_" in value):
            continue
        if name not in takes and not takes.open:
            raise UserError(f"{config.source}: refused: `{shown(where)}` is not an argument of {target}. Only checkpoints "
                            f"written by this project load here.")
        if name in takes and (error := next(iter(type_errors(where, value, takes[name][0])), None)):
            bad, found, why = error
            raise UserError(f"{config.source}: refused: `{bad}={shown(found)}`: {why} (an argument of {target}).")


def rebuild(config: FileConfig, key: str, **given: Any) -> Any:
    """The object the node at `key` of a checked config (`file_config`) describes, built by the
    classes conf/ offers there, with `given` arguments (not from the file) added. Unknown values
    are left to the class's defaults."""
    return build(config, key, config.node(key), given)


def build(config: FileConfig, key: str, node: Any, given: dict[str, Any]) -> Any:
    """The object of a node check() has passed: its nested objects first, then its class."""
    from hydra.utils import get_object

    if not isinstance(node, Mapping) or "_target_" not in node:
        raise UserError(f"{config.source}: `{key}` is not an object's description (no _target_): it was not written "
                        f"by this project's train.py.")
    target = node["_target_"]
    arguments = {}
    for name, value in node.items():
        where = f"{key}.{name}"
        if name in HYDRA_KEYS or where in config.unknown:
            if name not in ("_target_", "_partial_") and name in HYDRA_KEYS:  # offered by conf/, but not built here yet
                raise UserError(f"{config.source}: `{where}` cannot be rebuilt from a file (only _target_ and _partial_ are).")
            continue
        arguments[name] = build(config, where, value, {}) if isinstance(value, Mapping) and "_target_" in value else value
    obj = get_object(target)
    arguments.update(given)
    if node.get("_partial_"):
        return partial(obj, **arguments)
    try:
        return obj(**arguments)
    except UserError:
        raise
    except Exception as exc:  # a value the constructor refuses (a size past what memory can address, ...)
        raise UserError(f"{config.source}: `{key}` ({target}) cannot be built from its config: {type(exc).__name__}: "
                        f"{shown(' '.join(str(exc).split()), 200)}.") from None


def config_dirs(config_dir: str | None) -> tuple[Path, ...]:
    """The project's conf/, and the user's own config folder when given."""
    if config_dir is None:
        return (CONF,)
    if not Path(config_dir).expanduser().is_dir():
        raise UserError(f"config_dir={config_dir} is not a folder (give the folder you pass train.py as --config-dir).")
    return CONF, Path(config_dir).expanduser().resolve()
