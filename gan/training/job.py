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
from omegaconf import DictConfig

from gan.config.hydra_runtime import in_sweep
from gan.engine.distributed import processes_per_node
from gan.errors import UserError
from gan.files import WriteFailed
from gan.run.checkpoints.resume import continue_after_requeue
from gan.run.hparams import end_session
from gan.run.ranks import die_with_starter, process_rank, slurm_job, start_others_tied
from gan.run.signals import STOP, requeue_after
from gan.run.status import write_status
from gan.run.threads import auto_threads, registered
from gan.run.trackers import finish as finish_trackers
from gan.training.ending import ending
from gan.training.fit import fit, objective

log = logging.getLogger(__name__)


def threads(cfg: DictConfig) -> int:
    """`threads=auto`: this machine's cores shared among the runs alive on it (gan/run/threads.py)
    and among the processes of this run on this machine (trainer=ddp)."""
    return max(1, auto_threads() // processes_per_node(cfg.trainer)) if cfg.threads == "auto" else cfg.threads


def diverged(metrics: dict[str, float]) -> bool:
    return not all(math.isfinite(metrics[k]) for k in ("loss/d", "loss/g") if k in metrics)


def run(cfg: DictConfig) -> float | None:
    """fit(cfg) and its objective, with status.json (running, completed, stopped early by a
    callback such as the health monitor, diverged, failed, interrupted) written before and after.
    A signal ends the job as gan/run/signals.py says: `interrupted` and exit code 128 + its number."""
    continue_after_requeue(cfg)
    die_with_starter()
    if process_rank() > 0:  # another process of a run that rank zero records and reports
        for name in ("", "pytorch_lightning", "lightning_fabric"):  # Lightning's loggers have their own level
            logging.getLogger(name).setLevel(logging.WARNING)
        torch.set_num_threads(threads(cfg))
        with STOP.handling():  # a signal stops it at the iteration where rank zero stops (gan/run/signals.py)
            try:
                fit(cfg)
            except (KeyboardInterrupt, SystemExit):
                raise SystemExit(128 + (STOP.signum or signal.SIGINT)) from None
        if STOP.signum is not None:
            requeue_after(STOP.signum, process_rank())
            raise SystemExit(128 + STOP.signum)
        return None
    start_others_tied()
    with registered():
        return _run(cfg)


def _run(cfg: DictConfig) -> float | None:
    torch.set_num_threads(threads(cfg))
    start = time.time()
    common = {"started": start, "threads": torch.get_num_threads(), "max_steps": cfg.trainer.max_steps}
    if slurm_job() is not None:
        common["slurm_job"] = slurm_job()  # a requeued job knows its folder by it
    write_status(cfg.run_dir, status="running", **common)
    with STOP.handling():
        try:
            metrics = fit(cfg)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C, or a signal before training began
            interrupted(cfg, common, STOP.signum or signal.SIGINT)
        except Exception as exc:
            return failed(cfg, common, exc)
        recorded = ("processes", "replicas_identical", "metrics_protocol", "metrics_floor", "stop")  # status.json's, not scalars
        common.update({k: metrics.pop(k) for k in recorded if k in metrics})
        if STOP.signum is not None:
            interrupted(cfg, common, STOP.signum, metrics)
    try:
        value = objective(cfg, metrics)
    except Exception as exc:
        return failed(cfg, common, exc)
    stop = common.get("stop") or {}  # the pruner's (gan/sweeps/pruning.py) or the health monitor's (gan/callbacks.py)
    status = "diverged" if diverged(metrics) else "pruned" if stop.get("rule") == "pruner" else \
        "stopped" if metrics["global_step"] < cfg.trainer.max_steps else "completed"
    if status == "completed":  # a stop on the last iteration ended nothing early
        common.pop("stop", None)
    if status == "diverged" and in_sweep():
        log.error("This job diverged (non-finite losses); the sweep gets objective %s.", cfg.failed_objective)
        value = cfg.failed_objective
    ended = time.time()
    write_status(cfg.run_dir, status=status, ended=ended, objective=value, metrics=metrics, **common)
    record_end(cfg, status, metrics)
    log.info(ending(cfg.run_dir, status, metrics, ended - start, common))
    if status == "diverged" and not in_sweep():
        raise UserError(f"Training diverged: a loss became NaN or infinite by iteration {metrics['global_step']} "
                        f"(status.json: diverged). No checkpoint was written with non-finite weights; the newest "
                        f"one in {cfg.run_dir}/checkpoints is the last finite state. Try a lower learning rate.")
    return value


def record_end(cfg: DictConfig, status: str, metrics: dict | None = None) -> None:
    """status.json's final word where the loggers show a run's end: TensorBoard's HParams session,
    the MLflow / W&B run's status (and what a tracker did not receive, said)."""
    end_session(cfg, status)
    finish_trackers(status, metrics)


def failed(cfg: DictConfig, common: dict, exc: Exception) -> float:
    """A single run raises; a job of a sweep returns `failed_objective`, so the sweep goes on."""
    sweep = in_sweep()
    try:
        write_status(cfg.run_dir, status="failed", ended=time.time(), error=f"{type(exc).__name__}: {exc}",
                     objective=cfg.failed_objective if sweep else None, **common)
        record_end(cfg, "failed")
    except WriteFailed as also:  # the disk that failed the run refuses status.json too: the run's error is the news
        log.error("status.json not updated: %s", also)
    if not sweep:
        raise exc
    log.error("This job failed; the sweep goes on with objective %s.\n%s", cfg.failed_objective, traceback.format_exc())
    return cfg.failed_objective


def interrupted(cfg: DictConfig, common: dict, signum: int, metrics: dict | None = None) -> NoReturn:
    name = signal.Signals(signum).name
    write_status(cfg.run_dir, status="interrupted", signal=name, ended=time.time(), metrics=metrics, **common)
    record_end(cfg, "interrupted", metrics)
    where = f" at iteration {metrics['global_step']}; resume with ckpt_path={cfg.run_dir}" if metrics else ""
    log.warning("Stopped by %s%s.", name, where)
    requeue_after(signum, 0)
    raise SystemExit(128 + signum)
