"""SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send) end a run cleanly.

The training step in progress finishes (its chunk of at most `iterations_per_step` GAN
iterations, a fraction of a second), training stops as it does at max_steps (so last.ckpt holds
that iteration and a resume from it is exact), status.json says `interrupted` with the signal,
and the process exits with 128 + the signal's number (130, 143), as shells expect. A second
Ctrl-C stops at once (on_exception.ckpt then holds the state mid-iteration). Before training
starts there is nothing to save, so a signal stops the run straight away.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The signal handler: remembers the first signal; raises KeyboardInterrupt when no training
    loop is there to stop cleanly, or on a second Ctrl-C."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = False
        self.active = False  # set inside `handling()`, which gan.job wraps every job in

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
        self.signum, self.training, self.active = None, False, True
        self.install()
        try:
            yield self
        finally:
            self.active = False
            if threading.current_thread() is threading.main_thread():
                for signum, handler in previous.items():
                    signal.signal(signum, handler)


STOP = StopRequest()


class StopOnSignal(pl.Callback):
    """Stops training after the iteration in which a signal arrived (see the module's docstring).
    gan.fit adds it to every run; it acts inside `STOP.handling()`, as gan.job runs each job."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if STOP.active:
            STOP.install()  # again: Lightning put its own SIGTERM handler in place, which exits with code 0
            STOP.training = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if STOP.signum is not None:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.training = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        STOP.training = False
