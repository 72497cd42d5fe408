"""Several GAN iterations per Lightning step, with every event still on its own iteration.

Lightning's per-step machinery (hooks, loop bookkeeping, the logger connector) costs as much as a
whole iteration of the seed model on a GPU. So one `training_step`
runs a *chunk* of up to `iterations_per_step` iterations. A chunk always ends on the next
iteration at which something happens — a logged scalar, a sample grid, a checkpoint, an
evaluation, `max_steps` — so every callback still sees `global_step` land exactly on its
interval, whatever the chunk length. The chunks depend only on where they start, so a resumed
run plans the same chunks (and draws the same batches) as an uninterrupted one.

A callback of your own that acts every N iterations declares it with an `every_n_steps`
attribute, as this project's callbacks do, and chunks end on its multiples too.
"""

from __future__ import annotations

import torch

from gan.engine.lightning_adapter import checkpoint_every_n_steps

# `iterations_per_step=auto`: a CPU iteration is slow enough that 25 make Lightning's per-step
# cost negligible while the progress bar and Ctrl-C still answer at once; a GPU iteration is far
# shorter, so it needs longer chunks (docs/2026-11-28-speed.md has the figures).
AUTO_ITERATIONS = {"cpu": 25, "cuda": 200}


def iterations_per_step(option: int | str, device: torch.device | str) -> int:
    """The chunk length cap for `iterations_per_step` (a number, or `auto`) on `device`."""
    if option != "auto":
        return int(option)
    return AUTO_ITERATIONS.get(torch.device(device).type, AUTO_ITERATIONS["cpu"])


def event_intervals(trainer) -> list[int]:
    """Every interval, in GAN iterations, at which the trainer or one of its callbacks acts."""
    intervals = [trainer.log_every_n_steps]
    for callback in trainer.callbacks:
        intervals.append(getattr(callback, "every_n_steps", None) or checkpoint_every_n_steps(callback))
    return sorted({int(i) for i in intervals if i and i > 0})


def chunk_length(step: int, cap: int, intervals: list[int], max_steps: int) -> int:
    """How many iterations the chunk starting after iteration `step` runs: at most `cap`, and
    it ends on the first multiple of an interval (or `max_steps`) after `step`."""
    end = min([step + cap] + [(step // i + 1) * i for i in intervals] + ([max_steps] if max_steps > step else []))
    return max(1, end - step)
