"""What a run prints when it ends: where its outputs are, its last numbers, how to look at them."""

from __future__ import annotations

import math
from pathlib import Path

from gan.metrics import BETTER, METRICS
from gan.module import LOGGED_METRICS


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def ending(run_dir: str, status: str, metrics: dict[str, float], seconds: float, protocol: str | None = None) -> str:
    """A few lines: the status and iteration, the last logged losses, the last scores (with which
    way is better), the best checkpoint, the run folder and the TensorBoard command."""
    lines = [f"Run {status} at iteration {metrics.get('global_step', 0)} after {duration(seconds)}."]
    losses = [f"{tag} {metrics[tag]:.4g}" for tag in LOGGED_METRICS if tag in metrics]
    if losses:
        lines.append("  last logged:     " + ", ".join(losses))
    scores = [f"{name} {metrics[f'metrics/{name}']:.4g} {BETTER[name]}" for name in METRICS
              if f"metrics/{name}" in metrics and math.isfinite(metrics[f"metrics/{name}"])]
    if scores:
        lines.append(f"  last evaluation ({protocol}): " + ", ".join(scores) + "  (↑ higher is better, ↓ lower)")
    best = Path(run_dir) / "checkpoints" / "best_fid.ckpt"
    if best.exists():
        lines.append(f"  best checkpoint: {best}")
    lines.append(f"  outputs:         {run_dir}")
    lines.append(f"  look at them:    tensorboard --logdir {run_dir}")
    return "\n".join(lines)
