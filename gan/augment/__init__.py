"""What D sees (`augment` group): the images as they are, or differentiably augmented, reals and
fakes alike, so that a small data set lasts (DiffAugment, ADA). gan/module.py applies it to every
image D sees; gan/engine/draws.py draws its random numbers with the iteration's."""

from __future__ import annotations

from collections.abc import Mapping

from gan.augment.ada import ADA
from gan.augment.base import Augment, NoAugment
from gan.augment.diffaugment import DiffAugment

__all__ = ["ADA", "Augment", "DiffAugment", "NoAugment", "problems"]

IMAGE_CHANNELS = (1, 3)


def problems(cfg: Mapping) -> list[str]:
    """Why this resolved config cannot augment its data (its images must be grey or colour)."""
    target = (cfg.get("augment") or {}).get("_target_", "gan.augment.NoAugment")
    if target.endswith("NoAugment"):
        return []
    shape = list((cfg.get("data") or {}).get("image_shape") or [])
    if len(shape) == 3 and shape[0] in IMAGE_CHANNELS and min(shape[1:]) >= 2:
        return []
    return [f"augment={target.rsplit('.', 1)[-1]} transforms images of 1 or 3 channels, but data.image_shape={shape} "
            f"is not one (augment=none trains on such data)"]
