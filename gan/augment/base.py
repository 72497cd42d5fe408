"""What every augmentation is: a module that shows D a transformed image batch, from draws it
is handed.

An augmentation never draws a random number itself. `draw` makes every random number of a batch
(for the global batch, from the iteration's generator: gan/engine/draws.py), and `forward` is a
pure function of the images and those draws, differentiable in the images. So K iterations per
step, a resumed run and several processes augment exactly alike, and a CUDA graph replays an
augmented iteration with the draws as inputs. `adapt` sees D's outputs on the augmented reals
(ADA steers its strength by them); the state it keeps lives in buffers, saved with the module.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Augment(nn.Module):
    """The interface, and the identity: D sees the images as they are."""

    def __init__(self) -> None:
        super().__init__()  # takes no arguments: the config check refuses keys left over from another option

    def describe(self, channels: int) -> str:
        """One log line: what D's images go through, for images of `channels` channels."""
        return "none"

    def draw(self, n: int, size: tuple[int, int], rng: torch.Generator, device: torch.device) -> NamedTuple | None:
        """Every random number the augmentation of `n` images of `size` (H, W) needs, each
        tensor with the images along its first dimension (None: it needs none)."""
        return None

    def forward(self, x: torch.Tensor, draws: NamedTuple | None) -> torch.Tensor:
        """The images (N, C, H, W) in [-1, 1] as D sees them."""
        return x

    def show(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """`x` as D would see it with fresh draws from `rng` (for a person to look at)."""
        return self(x, self.draw(len(x), tuple(x.shape[-2:]), rng, x.device))

    def adapt(self, real_logits: list[torch.Tensor]) -> None:
        """Called once per GAN iteration with D's logits on the augmented reals of each D step."""

    def scalars(self) -> dict[str, torch.Tensor]:
        """What the logging steps write about the augmentation (`train/aug_p`, ...)."""
        return {}


class NoAugment(Augment):
    """`augment=none`: D sees the images as they are."""
