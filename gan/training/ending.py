"""What a run prints when it ends: where its outputs are, its last numbers, how to look at them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gan.metrics import BETTER, METRICS
from gan.module import LOGGED_METRICS
from gan.run.status import stopped_at
from gan.run.trackers import where_to_look

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def ending(run_dir: str, status: str, metrics: dict[str, float], seconds: float, about: dict | None = None) -> str:
    """A few lines: the status and iteration (and what stopped it early), the last logged losses,
    the last scores (with which way is better, under `about`'s metrics_protocol), the best checkpoint,
    the run folder and the TensorBoard command. `about`: the rest of what status.json records."""
    about = about or {}
    protocol = about.get("metrics_protocol")
    lines = [f"Run {status} at iteration {metrics.get('global_step', 0)} after {duration(seconds)}."]
    if about.get("stop"):
        lines[0] = f"Run {stopped_at({**about, 'status': status})} (after {duration(seconds)})."
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
    lines += [f"  look at them:    {view}" for view in views(Path(run_dir), "events.out.tfevents.*")]
    return "\n".join(lines)


def views(folder: Path, events: str) -> list[str]:
    """The commands and links that show a run or a sweep: TensorBoard where it wrote events
    (`events`: their pattern under `folder`), then each tracker's run."""
    board = [f"tensorboard --logdir {folder}"] if next(folder.glob(events), None) is not None else []
    return board + where_to_look(folder)


class SweepEnding(Callback):
    """At the end of a sweep (`-m`, hparams_search=): where it is, how its jobs ended, and the two
    commands that show them side by side; the last job's own ending is not the sweep's."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from gan.run.names import job_number
        from gan.run.status import DamagedStatus, read_status

        folder = Path(str(config.hydra.sweep.dir))
        words = []
        for job in sorted((p for p in folder.iterdir() if job_number(p) is not None), key=job_number) if folder.is_dir() else []:
            try:
                words.append(read_status(job).get("status", "not started"))
            except DamagedStatus:
                words.append("damaged")
        counts = ", ".join(f"{words.count(w)} {w}" for w in dict.fromkeys(words))
        looks = "".join(f"\n  look at them:    {view}" for view in views(folder, "*/events.out.tfevents.*"))
        log.info("Sweep done: %d jobs (%s) in %s%s\n  compare them:    python -m gan.report sweep=%s",
                 len(words), counts or "none", folder, looks, folder)
