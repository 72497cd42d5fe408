"""Whole GAN iterations captured in a CUDA graph and replayed, on CUDA devices.

A seed-model iteration is a hundred-odd small kernels: launching them from Python costs more than
running them. Captured once, an iteration is one graph launch. What the capture holds:
both D steps, the G step, the optimizer steps (fused Adam with `capturable=True`, the step
count on the device), the EMA and penalties. The inputs are the real batch (gathered by the
index table gan/data/batches.py draws from (seed, iteration)) and the iteration's noise, labels,
mixing weights and augmentation draws (gan/engine/draws.py, drawn from (seed, iteration) too):
before each replay they are copied into the graph's static buffers, so a replay computes what the
eager iteration would. BatchNorm running statistics and ADA's p are updated in place by the
replayed kernels, as in eager mode.

The first `warmup` iterations run eagerly on a side stream (they count as training; they
create the optimizer state and let cuDNN pick its algorithms), then one is captured. Anything
baked into the graph as a number — the optimizers' hyper-parameters — is watched: when it
changes (a resume with a new learning rate, a scheduler) the iteration is captured again.
With lazy regularisation an iteration's kernels depend on whether its D steps add the penalties
(`Draws.penalized`, a function of the iteration): one graph is captured for each pattern.
Under `bf16-mixed` the capture holds the iteration's autocast casts: it enters the precision
plugin's autocast, whose cast cache is off, so every cast is a kernel of the graph (a cached one
would be a tensor freed after the capture). `16-mixed` steps through the gradient scaler, whose
check for infinite gradients reads them on the host, so it runs eagerly.
Where capture cannot work, training runs eagerly and one log line says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from gan.engine.lightning_adapter import count_iteration, iteration_precision

log = logging.getLogger(__name__)

# Optimizers whose step has no host-side state (the others need `capturable=True`).
STATELESS_STEP = (torch.optim.SGD,)


def cuda_capture(fn: Callable[[], tuple]) -> Callable[[], tuple]:
    """Capture `fn` (one iteration reading the static input buffers) in a CUDA graph; the
    returned function replays it and returns its outputs (static tensors, refreshed in place)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()

    def replay() -> tuple:
        graph.replay()
        return outputs

    return replay


def cloned(inputs):
    """A copy of a graph's inputs (tensors, None, and tuples of them such as Draws), as its static buffers."""
    if isinstance(inputs, torch.Tensor):
        return inputs.clone()
    if isinstance(inputs, tuple):
        return type(inputs)(*map(cloned, inputs)) if hasattr(inputs, "_fields") else tuple(map(cloned, inputs))
    return inputs


def copy_into(static, inputs) -> None:
    """The next iteration's inputs copied into the static buffers `cloned` made of the first ones."""
    if isinstance(static, torch.Tensor):
        static.copy_(inputs)
    elif isinstance(static, tuple):
        for buffer, value in zip(static, inputs, strict=True):
            copy_into(buffer, value)


def reason_not_to_capture(module, execution) -> str | None:
    """Why `module`'s iterations cannot be captured on its trainer, or None."""
    trainer = module.trainer
    if module.device.type != "cuda":
        return "not on a CUDA device"
    if trainer.world_size > 1:
        return f"{trainer.world_size} processes (their gradient all-reduce is not captured)"
    if execution.through_lightning:
        return execution.through_lightning
    if module.schedule is not None:
        return "a schedule moves values a graph bakes in (the learning rate, ...) every iteration"
    for name, opt in zip(("generator", "discriminator"), module.optimizers()):
        opt = opt.optimizer
        if "capturable" not in opt.defaults and not isinstance(opt, STATELESS_STEP):
            return f"optimizer.{name} ({type(opt).__name__}) has no capturable mode"
    return None


def optimizer_settings(module) -> str:
    """Everything about the optimizers that a capture bakes in as a number."""
    return repr([[{k: v for k, v in group.items() if k != "params"} for group in opt.optimizer.param_groups]
                 for opt in module.optimizers()])


class GraphedIterations:
    """Runs a module's chunks of iterations by replaying one captured iteration (see above).
    `capture` is `cuda_capture`; tests of this logic on a CPU give an eager stand-in."""

    def __init__(self, module, execution, warmup: int = 3, capture: Callable = cuda_capture):
        self.module, self.execution, self.warmup, self.capture = module, execution, warmup, capture
        self.replays: dict[tuple, tuple[Callable[[], tuple], tuple]] = {}  # pattern -> (replay, its static inputs)
        self.settings: str | None = None
        self.eager_iterations = self.replayed = self.captures = 0
        self.failed = False
        self.stream = torch.cuda.Stream() if module.device.type == "cuda" else None
        for opt in module.optimizers():
            for group in opt.optimizer.param_groups:
                if "capturable" in group:
                    group["capturable"] = True

    @classmethod
    def for_module(cls, module, execution) -> GraphedIterations | None:
        reason = reason_not_to_capture(module, execution)
        if reason is None:
            return cls(module, execution)
        if module.device.type == "cuda":
            log.info("CUDA graphs off, training eagerly: %s (gan.cuda_graph=false silences this).", reason)
        return None

    def run(self, chunk) -> tuple:
        # Settings change between steps (a callback, a scheduler, a resume), so check once per chunk.
        if self.replays and optimizer_settings(self.module) != self.settings:
            log.info("Optimizer settings changed at iteration %d: capturing the iteration again.", self.module.global_step)
            self.replays = {}
        for reals, labels in chunk:
            draws = self.execution.draws(self.module.global_step)
            pattern = draws.penalized
            if pattern not in self.replays and not self.failed and self.eager_iterations >= self.warmup:
                self._capture(reals, labels, draws)
            if pattern not in self.replays:
                outputs = self._eager(reals, labels, draws)
            else:
                replay, static = self.replays[pattern]
                copy_into(static, (reals, labels, draws))
                outputs = replay()
                self.replayed += 1
            count_iteration(self.module.trainer)
        return outputs

    def _eager(self, reals: torch.Tensor, labels: torch.Tensor, draws) -> tuple:
        """An eager iteration (a warm-up one, or any after a failed capture), on a side stream as
        capture requires of the work before it."""
        self.eager_iterations += 1
        if self.stream is None:
            return self.module.iteration(reals, labels, draws)
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            outputs = self.module.iteration(reals, labels, draws)
        torch.cuda.current_stream().wait_stream(self.stream)
        return outputs

    def _capture(self, reals: torch.Tensor, labels: torch.Tensor, draws) -> None:
        static = cloned((reals, labels, draws))
        self.settings = optimizer_settings(self.module)
        try:
            self.replays[draws.penalized] = self.capture(lambda: self._iteration(static)), static
        except Exception as exc:  # an op that syncs with the host, an unsupported kernel
            self.failed = True
            log.warning("CUDA graph capture failed at iteration %d (%s: %s); training eagerly from here.",
                        self.module.global_step, type(exc).__name__, exc)
            return
        self.captures += 1

    def _iteration(self, static: tuple) -> tuple:
        """The iteration a capture records, in the run's precision whatever the caller's context."""
        with iteration_precision(self.module.trainer):
            return self.module.iteration(*static)
