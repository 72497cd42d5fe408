"""Hydra's runtime state, read in one place: whether this job is one of a sweep, its launcher, the
overrides typed, the option chosen in each group, the sweeper's settings, the config folders.
Outside a Hydra job (the tests, the small commands) each answers as for a plain single run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gan.config import CONF
from gan.files import write_text


def whole_hydra_files() -> None:
    """Hydra writes a job's .hydra/config.yaml, hydra.yaml and overrides.yaml with a plain open(),
    so a kill mid-write leaves half a file that gan.report and a resume read; it has no hook for
    that, so its writer is replaced by gan/files.py's (tests/config/test_whole_files.py)."""
    import hydra.core.utils as hydra_utils
    from omegaconf import OmegaConf

    def save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        write_text(Path(output_dir) / filename, OmegaConf.to_yaml(cfg))

    assert callable(hydra_utils._save_config), "Hydra no longer has hydra.core.utils._save_config"
    hydra_utils._save_config = save_config


def hydra() -> DictConfig | None:
    """The running job's `hydra` node, or None outside a Hydra job."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def in_sweep() -> bool:
    """Whether this job is one of a sweep (`-m`)."""
    node = hydra()
    return node is not None and node.mode == RunMode.MULTIRUN


def launcher(node: DictConfig | None = None) -> DictConfig | dict:
    """The launcher's settings (`_target_`, joblib's `n_jobs`, ...); {} outside Hydra."""
    node = hydra() if node is None else node
    return {} if node is None else node.launcher


def overrides() -> list[str]:
    """The job's own command-line overrides (a sweep job's swept values included), without Hydra's settings."""
    node = hydra()
    return [] if node is None else [o for o in node.overrides.task if not o.lstrip("+~").startswith("hydra.")]


def choices() -> dict[str, Any]:
    """group -> the option this job composed ({} outside Hydra)."""
    node = hydra()
    return {} if node is None else dict(node.runtime.choices)


def sweeper() -> DictConfig | dict:
    """The sweeper's settings (its search space `params`, an Optuna sweep's `trial`, `pruner`, `storage`, ...)."""
    node = hydra()
    return {} if node is None else node.sweeper


def sweep_folder() -> Path | None:
    """The sweep's folder, for a job of a sweep."""
    return Path(hydra().sweep.dir) if in_sweep() else None


def config_folders(node: DictConfig | None = None) -> tuple[Path, ...]:
    """The config folders the job composes from: conf/, and `--config-dir` or `hydra.searchpath` ones."""
    node = hydra() if node is None else node
    sources = node.runtime.config_sources if node is not None else []
    found = [Path(s.path) for s in sources if s.schema == "file" and s.path and Path(s.path).is_dir()]
    return tuple(dict.fromkeys([CONF, *found]))
