"""Values that move over training (the `schedule` node): each from its value in the config to a
final one over the first `kimg` thousand images, then held there. `cosine` is R3GAN's
cosine_decay_with_warmup (without warm-up), `linear` SNGAN's linear decay of the learning rate.

A scheduled value is a pure function of the images seen before the iteration (iteration x global
batch), set before each iteration, so K iterations per step, a resume and several processes see
the same values as one straight run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from omegaconf import OmegaConf

from gan.config.constraints import Fraction, NonNegFloat, PosFloat

SHAPES = ("cosine", "linear")
# Each scheduled key, where its start value lives in the config.
STARTS = {"lr": "optimizer.lr", "beta2": "optimizer.beta2", "r1_gamma": "loss.r1_gamma", "r2_gamma": "loss.r2_gamma",
          "ema_kimg": "gan.ema_kimg", "aug_p": "augment.p"}


@dataclass
class Schedule:
    """The keys of the `schedule` node; gan/training/schema.py checks them against these
    annotations. A final value of null leaves that key constant."""

    shape: Literal[SHAPES] = "cosine"  # how the values move: cosine | linear
    kimg: PosFloat | None = None  # over how many thousand images (null: the whole run)
    lr: NonNegFloat | None = None  # optimizer.lr at the end; each network's learning rate keeps its ratio to it
    beta2: Fraction | None = None  # optimizer.beta2 at the end (Adam's)
    r1_gamma: NonNegFloat | None = None  # loss.r1_gamma at the end
    r2_gamma: NonNegFloat | None = None  # loss.r2_gamma at the end
    ema_kimg: NonNegFloat | None = None  # gan.ema_kimg at the end (the half-life of G's average)
    aug_p: Fraction | None = None  # augment.p at the end (ADA with a fixed p: augment.target=null)

    @property
    def finals(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k in STARTS and v is not None}

    def progress(self, images: float, total_images: float) -> float:
        """How far the values have moved, 0 to 1, after `images` of the decay's `total_images`."""
        done = min(max(images / total_images, 0.0), 1.0)
        return (1 - math.cos(math.pi * done)) / 2 if self.shape == "cosine" else done


def schedule_problems(cfg) -> list[str]:
    """Why the resolved config's `schedule` cannot run: a key whose start is not a number in this config."""
    schedule = cfg.get("schedule") or {}
    lines = []
    for key, where in STARTS.items():
        if schedule.get(key) is None:
            continue
        node, name = where.rsplit(".", 1)
        start = (cfg.get(node) or {}).get(name)
        if not isinstance(start, (int, float)) or isinstance(start, bool):
            lines.append(f"`schedule.{key}={schedule[key]}` moves `{where}`, which this config does not set to a number "
                         f"({where}={start!r}): pick an option of the {node} group that has it, or set schedule.{key}=null")
        elif key == "aug_p" and (cfg.get("augment") or {}).get("target") is not None:
            lines.append(f"`schedule.aug_p={schedule[key]}` sets ADA's p, which augment.target steers itself: "
                         f"set augment.target=null (a fixed p), or schedule.aug_p=null")
    return lines


class Scheduled:
    """A run's schedule: each moving key's (start, final) value, the images the decay lasts, and
    each network's learning rate at the start (a per-network rate keeps its ratio to optimizer.lr)."""

    def __init__(self, schedule: Schedule, starts: dict[str, float], total_images: float, network_lrs: tuple[float, float]):
        self.schedule, self.total_images, self.network_lrs = schedule, total_images, network_lrs
        self.moves = {key: (float(starts[key]), float(final)) for key, final in schedule.finals.items()}

    @classmethod
    def from_config(cls, cfg) -> Scheduled | None:
        """The config's schedule, or None when it moves nothing."""
        schedule = Schedule(**(cfg.get("schedule") or {}))
        if not schedule.finals:
            return None
        starts = {key: OmegaConf.select(cfg, where) for key, where in STARTS.items()}
        total = schedule.kimg * 1000 if schedule.kimg is not None else cfg.trainer.max_steps * cfg.data.batch_size
        return cls(schedule, starts, total, (cfg.optimizer.generator.lr, cfg.optimizer.discriminator.lr))

    def values(self, images: float) -> dict[str, float]:
        """Each moving key's value once `images` have been trained on."""
        done = self.schedule.progress(images, self.total_images)
        return {key: start + done * (final - start) for key, (start, final) in self.moves.items()}

    def apply(self, module, images: float) -> None:
        """Sets the values for the iteration that follows `images` trained on: the optimizers'
        learning rates and Adam's beta2, the loss's penalty weights, the EMA half-life, ADA's p."""
        values = self.values(images)
        for opt, network_lr in zip(module.optimizers(), self.network_lrs):
            for group in getattr(opt, "optimizer", opt).param_groups:
                if "lr" in values:
                    start = self.moves["lr"][0]
                    group["lr"] = network_lr * (values["lr"] / start if start else 1.0)
                if "beta2" in values:
                    group["betas"] = (group["betas"][0], values["beta2"])
        for key in ("r1_gamma", "r2_gamma"):
            if key in values:
                setattr(module.loss, key, values[key])
        if "ema_kimg" in values:
            module.ema_kimg = values["ema_kimg"]
        if "aug_p" in values:
            module.augment.p.fill_(values["aug_p"])
