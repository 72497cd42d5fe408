"""SIGINT (Ctrl-C), SIGTERM (what SLURM and Kubernetes send) and the preemption signal (USR2,
what submitit asks SLURM to send before a time limit or preemption) end a run cleanly.

The training step in progress finishes (its chunk of at most `iterations_per_step` GAN
iterations, a fraction of a second), training stops as it does at max_steps (so last.ckpt holds
that iteration and a resume from it is exact), status.json says `interrupted` with the signal,
and the process exits with 128 + the signal's number (130, 143), as shells expect. A second
Ctrl-C stops at once (on_exception.ckpt then holds the state mid-iteration). Before training
starts there is nothing to save, so a signal stops the run straight away.

After a clean stop on the preemption signal the job is requeued by one mechanism: the handler
that was there before the job started (submitit's, under hydra/launcher=slurm: it resubmits the
same job), else `scontrol requeue` when the job runs under SLURM. The requeued job finds its own
folder and continues from its checkpoint (gan/run/checkpoints/resume.py). Lightning's own SLURM requeue
(on SIGUSR1) is switched off (gan/engine/distributed.py `cluster_plugins`), so the two never both act.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl

log = logging.getLogger(__name__)
PREEMPT = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
SIGNALS = (signal.SIGINT, signal.SIGTERM, PREEMPT)


class StopRequest:
    """The signal handler: remembers the first signal; raises KeyboardInterrupt when no training
    loop is there to stop cleanly, or on a second Ctrl-C."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = False
        self.active = False  # set inside `handling()`, which gan.training.job wraps every job in
        self.previous: dict[int, object] = {}  # the handlers before the job's (submitit's, under its launcher)

    def __call__(self, signum: int, frame) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        if not self.training or (again and signum == signal.SIGINT):
            raise KeyboardInterrupt
        log.warning("%s received: finishing this step's iterations, then saving last.ckpt and stopping "
                    "(Ctrl-C again to stop at once).", signal.Signals(signum).name)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # Python only lets the main thread handle signals
            for signum in SIGNALS:
                signal.signal(signum, self)

    @contextmanager
    def handling(self) -> Iterator[StopRequest]:
        """Handle the signals inside the block, as a fresh request; the previous handlers after it."""
        previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        self.signum, self.training, self.active, self.previous = None, False, True, previous
        self.install()
        try:
            yield self
        finally:
            self.active = False
            if threading.current_thread() is threading.main_thread():
                for signum, handler in previous.items():
                    signal.signal(signum, handler)


STOP = StopRequest()


def requeue_after(signum: int, rank: int) -> None:
    """After a clean stop on the preemption signal, requeue the job: through the handler that was
    installed before the job (submitit's checkpoint-and-requeue, which resubmits the same job and
    exits), else with `scontrol requeue` under SLURM (rank zero only). Other signals: nothing."""
    if signum != PREEMPT:
        return
    previous = STOP.previous.get(signum)
    if callable(previous):
        previous(signum, None)
    elif rank == 0 and "SLURM_JOB_ID" in os.environ:
        log.warning("Requeueing SLURM job %s to continue from last.ckpt.", os.environ["SLURM_JOB_ID"])
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=False)


class StopOnSignal(pl.Callback):
    """Stops training after the iteration in which a signal arrived (see the module's docstring).
    gan.training.fit adds it to every run; it acts inside `STOP.handling()`, as gan.training.job runs each job."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if STOP.active:
            STOP.install()  # again: Lightning put its own SIGTERM handler in place, which exits with code 0
            STOP.training = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        stop = STOP.signum is not None
        if trainer.world_size > 1:  # a signal to any process stops them all after the same iteration
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.training = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        STOP.training = False
