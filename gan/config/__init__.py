"""Configs as the project reads them: the constructors' signatures as the schema, the small
commands' key=value, files read back as data, `python train.py --help`."""

from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"  # the project's config groups (Hydra's config_path of train.py)
