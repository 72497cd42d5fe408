"""Every run gets a folder of its own, and no run writes into another run's folder.

`${unique_dir:outputs/<date>/<time>}` (used by conf/train.yaml for hydra.run.dir and
hydra.sweep.dir) claims the folder with an atomic mkdir and appends `_1`, `_2`, ... when a run
started in the same second already holds it. Hydra caches the value and copies that cache to
every job of a sweep, so all jobs share one sweep folder.

A folder given explicitly (`hydra.run.dir=...`, `hydra.sweep.dir=...`) is checked by
`RunDirGuard` before Hydra writes into it: when it already holds files, the run goes to a
fresh sibling instead. A resumed run (`ckpt_path=<old run>`) gets a folder of its own too; its
step count, samples and TensorBoard curves continue from the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from gan.errors import UserError

log = logging.getLogger(__name__)


def unique_dir(path: str) -> str:
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = base if n == 0 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            continue
    raise UserError(f"Could not find a free run folder next to {base}.")


if not OmegaConf.has_resolver("unique_dir"):
    OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)


class RunDirGuard(Callback):
    """Hydra writes `.hydra/` and the log before any job code runs, so the check happens as
    the run (or sweep) starts: a folder that already holds files is left alone and this run
    goes to a fresh sibling (`<dir>_1`, ...), which the console names."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._redirect(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._redirect(config, "sweep")

    @staticmethod
    def _redirect(config: DictConfig, mode: str) -> None:
        wanted = Path(config.hydra[mode].dir)
        if not wanted.is_dir() or not any(wanted.iterdir()):
            return
        fresh = unique_dir(str(wanted))
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra[mode].dir = fresh
            # Each sweep job composes its config again from these overrides: point them there too.
            overrides = config.hydra.overrides.hydra
            key = f"hydra.{mode}.dir="
            kept = [o for o in overrides if not o.startswith(key)]
            config.hydra.overrides.hydra = [*kept, key + fresh]
        log.warning("%s already holds files; this %s writes to %s instead.", wanted, "run" if mode == "run" else "sweep", fresh)
