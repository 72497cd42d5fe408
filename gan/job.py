"""One job as train.py runs it: threads, the run's status.json, and what a sweep gets back.

In a sweep (`-m`) a job that crashes or diverges (non-finite final losses) returns
`failed_objective` instead of raising, so the sweeper records a bad trial and runs the other
jobs; its status.json says what happened, for `gan.report`. A single run raises as usual.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
from typing import NoReturn

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gan.errors import UserError
from gan.fit import fit, objective
from gan.signals import STOP
from gan.status import write_status
from gan.summary import ending
from gan.threads import auto_threads, registered

log = logging.getLogger(__name__)


def threads(cfg: DictConfig) -> int:
    """`threads=auto`: this machine's cores shared among the runs alive on it (gan/threads.py)."""
    return auto_threads() if cfg.threads == "auto" else cfg.threads


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def diverged(metrics: dict[str, float]) -> bool:
    return not all(math.isfinite(metrics[k]) for k in ("loss/d", "loss/g") if k in metrics)


def run(cfg: DictConfig) -> float | None:
    """fit(cfg) and its objective, with status.json (running, completed, stopped early by a
    callback such as the health monitor, diverged, failed, interrupted) written before and after.
    A signal ends the job as gan/signals.py says: `interrupted` and exit code 128 + its number."""
    with registered():
        return _run(cfg)


def _run(cfg: DictConfig) -> float | None:
    torch.set_num_threads(threads(cfg))
    start = time.time()
    common = {"started": start, "threads": torch.get_num_threads()}
    write_status(cfg.run_dir, status="running", **common)
    with STOP.handling():
        try:
            metrics = fit(cfg)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C, or a signal before training began
            interrupted(cfg, common, STOP.signum or signal.SIGINT)
        except Exception as exc:
            return failed(cfg, common, exc)
        if STOP.signum is not None:
            interrupted(cfg, common, STOP.signum, metrics)
    try:
        value = objective(cfg, metrics)
    except Exception as exc:
        return failed(cfg, common, exc)
    status = "diverged" if diverged(metrics) else "stopped" if metrics["global_step"] < cfg.trainer.max_steps else "completed"
    if status == "diverged" and in_sweep():
        log.error("This job diverged (non-finite losses); the sweep gets objective %s.", cfg.failed_objective)
        value = cfg.failed_objective
    ended = time.time()
    write_status(cfg.run_dir, status=status, ended=ended, objective=value, metrics=metrics, **common)
    log.info(ending(cfg.run_dir, status, metrics, ended - start))
    if status == "diverged" and not in_sweep():
        raise UserError(f"Training diverged: a loss became NaN or infinite by iteration {metrics['global_step']} "
                        f"(status.json: diverged). No checkpoint was written with non-finite weights; the newest "
                        f"one in {cfg.run_dir}/checkpoints is the last finite state. Try a lower learning rate.")
    return value


def failed(cfg: DictConfig, common: dict, exc: Exception) -> float:
    """A single run raises; a job of a sweep returns `failed_objective`, so the sweep goes on."""
    sweep = in_sweep()
    write_status(cfg.run_dir, status="failed", ended=time.time(), error=f"{type(exc).__name__}: {exc}",
                 objective=cfg.failed_objective if sweep else None, **common)
    if not sweep:
        raise exc
    log.error("This job failed; the sweep goes on with objective %s.\n%s", cfg.failed_objective, traceback.format_exc())
    return cfg.failed_objective


def interrupted(cfg: DictConfig, common: dict, signum: int, metrics: dict | None = None) -> NoReturn:
    name = signal.Signals(signum).name
    write_status(cfg.run_dir, status="interrupted", signal=name, ended=time.time(), metrics=metrics, **common)
    where = f" at iteration {metrics['global_step']}; resume with ckpt_path={cfg.run_dir}" if metrics else ""
    log.warning("Stopped by %s%s.", name, where)
    raise SystemExit(128 + signum)
