"""Configs as the project reads them: the constructors' signatures as the schema, the small
commands' key=value, files read back as data, `python train.py --help`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parents[2] / "conf"  # the project's config groups (Hydra's config_path of train.py)
HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")  # what Hydra reads in a node, not an argument


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Dotted keys, scalar values. Lists become their text and None "null", so every run of a
    sweep has the same keys with comparable values in the HParams table."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(list(value) if isinstance(value, (list, tuple)) else value)
    return flat
