"""The run's own options: the keys of conf/train.yaml that no object is built from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gan.config.constraints import PosInt


@dataclass
class RunOptions:
    """The top-level keys of conf/train.yaml that no constructor takes, read directly by
    gan.training.job and gan.training.fit; gan/training/schema.py checks them against these annotations."""

    run_dir: str  # this run's folder
    ckpt_path: str | None = None  # resume from this checkpoint or run folder
    optimized_metric: str | list[str] | None = None  # what a sweeper gets back (a list: several objectives)
    failed_objective: float = math.inf  # what a failed job of a sweep returns
    threads: PosInt | Literal["auto"] = "auto"  # CPU threads of this job
    iterations_per_step: PosInt | Literal["auto"] = "auto"  # GAN iterations per Lightning step (gan/engine/chunks.py)
