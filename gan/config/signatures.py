"""What a class takes, read off its signature: the parameters a config node may set and the types
they must have. gan/training/schema.py checks a composed config with it, and gan/config/untrusted.py a node read
back from a file, before either is built.

The project's own classes type their parameters (`batch_size: PosInt`, gan/config/constraints.py), and
those annotations are the check; a library class (torch optimizers, the Lightning Trainer,
loggers) is checked for the parameter's existence, plus the few rules this project adds on top
(`LIBRARY_RULES`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any, Literal

from hydra.utils import get_object
from pydantic import TypeAdapter, ValidationError

from gan.config.constraints import Beta, NonNegFloat, NonNegInt, PosFloat, PosInt

# What this project asks of arguments it passes to library classes, by base class. The library
# checks the rest when the object is built (gan.training.fit builds the optimizers on a dummy tensor first).
LIBRARY_RULES: dict[str, dict[str, Any]] = {
    "torch.optim.Optimizer": {
        "lr": PosFloat, "betas": tuple[Beta, Beta], "eps": PosFloat, "weight_decay": NonNegFloat,
        "momentum": NonNegFloat, "alpha": NonNegFloat, "fused": bool | None,
    },
    "pytorch_lightning.Trainer": {
        "accelerator": Literal["cpu", "gpu", "cuda", "mps", "auto"],
        "devices": PosInt | Literal["auto"] | list[NonNegInt],  # more than one needs trainer=ddp (gan/engine/distributed.py)
        "num_nodes": PosInt,
        "precision": Literal["64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"],
        "max_steps": PosInt,
        "max_epochs": Literal[-1, None],  # a run's length is max_steps GAN iterations; its data has no epochs Lightning counts
        "log_every_n_steps": PosInt,
    },
    "pytorch_lightning.callbacks.ModelCheckpoint": {"every_n_train_steps": NonNegInt | None},
}


class Parameters(dict):
    """name -> (annotation, required) of what a node's consumer takes; `open`: it also takes
    keyword arguments it does not name."""

    open = False


def _hints(function) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # a library's annotations may not resolve outside its own imports
        return {}


@cache
def parameters(target: str | Any) -> Parameters:
    """What a class (or function) takes: its signature's parameters, following `**kwargs` to
    the base classes that receive them. The project's own annotations are kept; a library's are
    replaced by `LIBRARY_RULES` (or Any)."""
    obj = get_object(target) if isinstance(target, str) else target
    found = Parameters()
    if inspect.isclass(obj) and hasattr(obj, "KWARGS_GO_TO"):  # its **kwargs are another class's arguments
        found.update({name: (Any, False) for name in inspect.signature(obj.KWARGS_GO_TO).parameters})
    classes = [c for c in obj.__mro__ if c is not object] if inspect.isclass(obj) else [obj]
    for owner in classes:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if inspect.isclass(owner) and "__init__" not in vars(owner):
            continue
        own = (getattr(owner, "__module__", "") or "").split(".")[0] == "gan"
        hints = _hints(function) if own else {}
        rules = {} if own else _library_rules(obj)
        accepts_more, first = False, not found  # a base reached through **kwargs: the subclass fills in what it requires
        for name, p in list(inspect.signature(function).parameters.items())[1 if inspect.isclass(owner) else 0:]:
            if p.kind is p.VAR_KEYWORD:
                accepts_more = True
            elif p.kind is not p.VAR_POSITIONAL and name not in found:
                found[name] = (hints.get(name, rules.get(name, Any)), first and p.default is p.empty)
        if not accepts_more:
            return found
        if not inspect.isclass(owner):
            break
    found.open = True  # **kwargs that no base class names
    return found


def _library_rules(cls) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for base, table in LIBRARY_RULES.items():
        if inspect.isclass(cls) and issubclass(cls, get_object(base)):
            rules.update(table)
    return rules



def check(where: str, value: Any, annotation: Any) -> Iterator[tuple[str, Any, str]]:
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        found: dict[str, tuple[Any, list[str]]] = {}
        for error in exc.errors():
            index = [str(part) for part in error["loc"] if isinstance(part, int)]  # a list element; str parts name union members
            key = ".".join([where, *index])
            found.setdefault(key, (error.get("input", value), []))[1].append(error["msg"][0].lower() + error["msg"][1:])
        for key, (bad, messages) in found.items():  # a union (`threads`: a number or 'auto'): one message
            lead = "input should be "
            if len(messages) > 1 and all(m.startswith(lead) for m in messages):
                messages = [lead + " or ".join(m.removeprefix(lead) for m in messages)]
            yield key, bad, "; ".join(messages)


