"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
colour, translation and cutout, applied alike to every image D sees.

The strengths are the paper's (images in [-1, 1]): brightness + U(-0.5, 0.5), saturation
x U(0, 2), contrast x U(0.5, 1.5), a translation of up to 1/8 of the side (what moves in is zero),
and a cutout box of half the side zeroed. Each is a key of `augment=diffaug`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from gan.augment.base import Augment
from gan.config.constraints import Fraction, NonNegFloat

POLICIES = ("color", "translation", "cutout")


class DiffAugmentDraws(NamedTuple):
    """One batch's draws: uniforms in [0, 1) for brightness, saturation and contrast (N,), the
    translation (N, 2) in pixels (rows, columns) and the cutout box's top-left corner (N, 2)."""

    brightness: torch.Tensor
    saturation: torch.Tensor
    contrast: torch.Tensor
    shift: torch.Tensor
    corner: torch.Tensor


def span(size: int, ratio: float) -> int:
    """DiffAugment's rounding of a share of the side to pixels."""
    return int(size * ratio + 0.5)


def moved_and_cut(x: torch.Tensor, shift: torch.Tensor | None, corner: torch.Tensor | None,
                  box: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Each image moved by its `shift` (rows, columns; what moves in from outside is zero,
    mid-grey in [-1, 1]), then a `box` (rows, columns) zeroed with its top-left corner at
    `corner` (it may hang over the edge). One gather from the image with a one-pixel zero border:
    a pixel from outside, or inside the box, reads a border pixel."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).expand(n, h) + 1  # where each output pixel reads, in the bordered image
    cols = torch.arange(w, device=x.device).expand(n, w) + 1
    if shift is not None:
        rows, cols = (rows - shift[:, :1]).clamp(0, h + 1), (cols - shift[:, 1:]).clamp(0, w + 1)
    index = rows[:, :, None] * (w + 2) + cols[:, None, :]  # (n, h, w)
    if corner is not None:
        r = torch.arange(h, device=x.device) - corner[:, :1]  # (n, h): the row within the box
        k = torch.arange(w, device=x.device) - corner[:, 1:]
        inside = ((r >= 0) & (r < box[0]))[:, :, None] & ((k >= 0) & (k < box[1]))[:, None, :]
        index = index.masked_fill(inside, 0)  # the border's corner
    bordered = F.pad(x, (1, 1, 1, 1)).reshape(n, c, (h + 2) * (w + 2))
    return bordered.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


class DiffAugment(Augment):
    """The policy's transforms in DiffAugment's order (colour, translation, cutout)."""

    def __init__(self, policy: list[Literal[POLICIES]] = POLICIES, brightness: NonNegFloat = 0.5,
                 saturation: NonNegFloat = 1.0, contrast: NonNegFloat = 0.5, translation: Fraction = 0.125,
                 cutout: Fraction = 0.5):
        """`policy`: which transforms; `brightness`: the largest shift added; `saturation`,
        `contrast`: the factor is drawn from [1 - s, 1 + s]; `translation`, `cutout`: shares of
        the side (the largest shift, the box)."""
        super().__init__()
        self.policy = tuple(p for p in POLICIES if p in policy)
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.translation, self.cutout = translation, cutout

    def describe(self, channels: int) -> str:
        parts = []
        if "color" in self.policy:
            grey = channels == 1
            parts.append("color (brightness, contrast" + ("; no saturation for grey images)" if grey else ", saturation)"))
        parts += [p for p in self.policy if p != "color"]
        return "DiffAugment: " + ", ".join(parts)

    def draw(self, n: int, size: tuple[int, int], rng: torch.Generator, device: torch.device) -> DiffAugmentDraws:
        """The draws of `n` images of `size` (H, W), in a fixed order whatever the policy (so a
        process can keep its rows of the global batch, and a policy change moves no other draw)."""
        h, w = size
        uniform = torch.rand(3, n, generator=rng, device=device)
        reach = torch.tensor([span(h, self.translation), span(w, self.translation)], device=device)
        shift = (torch.rand(n, 2, generator=rng, device=device) * (2 * reach + 1)).floor().long() - reach
        box = torch.tensor([span(h, self.cutout), span(w, self.cutout)], device=device)
        room = torch.tensor([h, w], device=device) + 1 - box % 2  # DiffAugment's centres: [0, side + (1 - box % 2))
        corner = (torch.rand(n, 2, generator=rng, device=device) * room).floor().long() - box // 2
        return DiffAugmentDraws(uniform[0], uniform[1], uniform[2], shift, corner)

    def colour(self, x: torch.Tensor, d: DiffAugmentDraws) -> torch.Tensor:
        """Brightness + (2u - 1) b; saturation: the distance to the pixel's channel mean times
        1 + (2u - 1) s (nothing for grey); contrast: the distance to the image's mean times 1 + (2u - 1) c."""
        per_image = lambda u, strength: ((2 * u - 1) * strength).view(-1, 1, 1, 1)
        x = x + per_image(d.brightness, self.brightness)
        if x.shape[1] > 1:
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (1 + per_image(d.saturation, self.saturation)) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (1 + per_image(d.contrast, self.contrast)) + mean

    def forward(self, x: torch.Tensor, d: DiffAugmentDraws | None) -> torch.Tensor:
        if d is None:
            return x
        if "color" in self.policy:
            x = self.colour(x, d)
        if "translation" in self.policy or "cutout" in self.policy:
            box = (span(x.shape[2], self.cutout), span(x.shape[3], self.cutout))
            x = moved_and_cut(x, d.shift if "translation" in self.policy else None,
                              d.corner if "cutout" in self.policy else None, box)
        return x
