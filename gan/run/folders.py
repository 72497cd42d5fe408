"""Every run gets a folder of its own, and no run writes into another run's folder.

`${unique_dir:outputs/<date>/<time>}` (used by conf/train.yaml for hydra.run.dir and
hydra.sweep.dir) claims the folder with an atomic mkdir and appends `_1`, `_2`, ... when a run
started in the same second already holds it. Hydra caches the value and copies that cache to
every job of a sweep, so all jobs share one sweep folder.

A folder given explicitly (`hydra.run.dir=...`, `hydra.sweep.dir=...`) is checked by
`RunDirGuard` before Hydra writes into it: when it already holds files, the run goes to a
fresh sibling instead. An Optuna study with storage (`hparams_search=`) is the exception:
re-running it continues the stored study in its folder, and `${free_job_dir:...}` gives the new
jobs the next free numbers there. A resumed run (`ckpt_path=<old run>`) gets a folder of its own too; its
step count, samples and TensorBoard curves continue from the checkpoint.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from gan.errors import UserError, stopping_hydra
from gan.run.names import job_dir, job_number
from gan.run.ranks import process_rank, requeued_into

log = logging.getLogger(__name__)


def claim(candidates: Iterable[Path]) -> Path:
    """The first candidate folder this process manages to create: an atomic mkdir, so two
    processes never get the same one."""
    for candidate in candidates:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:  # a read-only outputs/, a name the file system refuses
            raise UserError(f"Cannot create the run folder {candidate} ({exc.strerror or exc}). Run from a directory "
                            f"you can write to, or give one with hydra.run.dir=... (a sweep: hydra.sweep.dir=...).") from None
    raise UserError(f"Could not find a free folder (the last one tried: {candidate}).")


def numbered(base: Path) -> Iterator[Path]:
    """`base`, then `base_1`, `base_2`, ...: where a run goes when the folder before is taken."""
    yield base
    yield from (base.with_name(f"{base.name}_{n}") for n in range(1, 10_000))


def unique_dir(path: str) -> str:
    base = Path(path)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {base.parent} for the run folders ({exc.strerror or exc}). Run from a directory "
                        f"you can write to, or give one with hydra.run.dir=... (a sweep: hydra.sweep.dir=...).") from None
    return str(claim(numbered(base)))


def outputs_root(debug: str | None) -> str:
    """Where runs land: outputs/, or outputs/debug/ for `debug=` smoke runs, so that they sit
    apart from real runs (`rm -rf outputs/debug`) and no HParams table mixes them in."""
    return "outputs/debug" if debug else "outputs"


def sweep_dir(study: str | None, fresh: str) -> str:
    """The sweep's folder: `outputs/optuna/<study>` for an Optuna study (the same folder on
    every invocation, so re-running continues it), else `unique_dir(fresh)`. The choice is made
    here, not by overriding hydra.sweep.dir in a config group, because OmegaConf resolves the
    value it replaces when merging, which would claim an unused timestamped folder."""
    return f"outputs/optuna/{study}" if study else unique_dir(fresh)


def job_order(folder: Path) -> tuple[bool, int, str]:
    """Sort key of a sweep's job folders as they were numbered: 0, 1, ..., 10, then other names."""
    number = job_number(folder)
    return number is None, number or 0, folder.name


def free_job_dir(sweep_dir: str, job_num: int) -> str:
    """A job's sub-folder (`job_dir`: its number and what it changed), numbered on past every number
    an earlier invocation of the same study used, and claimed with an atomic mkdir, so parallel
    jobs never share one."""
    sweep = Path(sweep_dir)
    sweep.mkdir(parents=True, exist_ok=True)
    own = [p for p in sweep.iterdir() if job_number(p) == int(job_num) and requeued_into(p)]
    if own:  # a requeued trial continues in its own folder
        return own[0].name
    taken = {job_number(p) for p in sweep.iterdir()}
    return claim(sweep / job_dir(n) for n in itertools.count(int(job_num)) if n not in taken).name


# What Hydra writes first in a run's (a sweep's) folder; created here first, atomically, as the claim.
MARKERS = {"run": ".hydra/", "sweep": "multirun.yaml"}


def take(folder: Path, marker: str, key: str) -> bool:
    """Claim `folder` for this process: it is new or empty, and this process is the one that
    creates `marker` in it (an atomic mkdir), so two runs started together never share it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            return False
        if marker.endswith("/"):
            (folder / marker).mkdir()
        else:
            (folder / marker).open("x").close()  # Hydra writes the file's content later
        return True
    except FileExistsError:  # another run created the marker first, or the folder is a file
        return False
    except OSError as exc:  # read-only, no such parent, a name the file system refuses
        raise UserError(f"{key}={folder}: cannot create the run folder there ({exc.strerror or exc}). "
                        f"Give a folder you can write to ({key}=...), or run from another directory.") from None


class RunDirGuard(Callback):
    """Hydra writes `.hydra/` and the log before any job code runs, so the check happens as
    the run (or sweep) starts: a folder that already holds files is left alone and this run
    goes to a fresh sibling (`<dir>_1`, ...), which the console names."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with stopping_hydra():
            rank = process_rank()
            if rank > 0:  # another process of a multi-process run: it joins the folder rank zero claims
                self._join(config, rank)
            else:
                self._redirect(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with stopping_hydra():
            if config.hydra.sweeper.get("storage"):  # a stored Optuna study continues in its folder ...
                Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # ... where its database goes
                return  # `free_job_dir` numbers the new jobs after the stored ones
            self._redirect(config, "sweep")

    @staticmethod
    def _join(config: DictConfig, rank: int, wait_s: float = 300) -> None:
        """Rank `rank` of a run (a process Lightning started, or an srun task) writes into the folder
        rank zero claimed: no `.hydra/` of its own, its log in `train_rank<N>.log`. The folder must
        be named on the command line (Lightning does so for the processes it starts), or each
        task would claim a fresh one."""
        if not any(o.startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra):
            raise UserError(f"This is process {rank} of a run started by your launcher (srun, torchrun): its "
                            f"processes must share one run folder, so give it on the command line, e.g. "
                            f"hydra.run.dir=outputs/slurm/${{SLURM_JOB_ID}} (README: Several GPUs and clusters).")
        marker = Path(config.hydra.run.dir) / MARKERS["run"]
        deadline = time.monotonic() + wait_s
        while not marker.exists() and time.monotonic() < deadline:  # rank zero claims it first
            time.sleep(0.2)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.output_subdir = None
            if not any(o.startswith("hydra.job.name=") for o in config.hydra.overrides.hydra):  # Lightning names its own
                config.hydra.job.name = f"train_rank{rank}"

    @staticmethod
    def _redirect(config: DictConfig, mode: str) -> None:
        wanted = Path(config.hydra[mode].dir)
        if mode == "run" and requeued_into(wanted):  # a requeued SLURM job continues in its own folder
            return
        claimed = next(candidate for candidate in numbered(wanted) if take(candidate, MARKERS[mode], f"hydra.{mode}.dir"))
        if claimed == wanted:
            return
        fresh = str(claimed)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra[mode].dir = fresh
            # Each sweep job composes its config again from these overrides: point them there too.
            overrides = config.hydra.overrides.hydra
            key = f"hydra.{mode}.dir="
            kept = [o for o in overrides if not o.startswith(key)]
            config.hydra.overrides.hydra = [*kept, key + fresh]
        log.warning("%s already holds files; this %s writes to %s instead.", wanted, "run" if mode == "run" else "sweep", fresh)
