"""DCGAN (Radford et al. 2016): transposed convolutions up, strided convolutions down."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from gan.config.constraints import NonNegFloat, PosInt
from gan.networks.base import INITS, Discriminator, Generator, Shape, init_weights, label_maps


def pyramid(image_shape: Sequence[int]) -> tuple[int, int]:
    """(start size, number of 2x steps) of a DCGAN for square images: 28 -> (7, 2),
    32 -> (4, 3), 64 -> (4, 4). The start is the smallest map of at least 4 pixels."""
    _, height, width = image_shape
    size, steps = height, 0
    while size % 2 == 0 and size // 2 >= 4:
        size, steps = size // 2, steps + 1
    if height != width or steps == 0:
        raise ValueError(f"DCGAN networks need square images whose side halves at least once to 4 pixels or more "
                         f"(28, 32, 64, ...); got {list(image_shape)}")
    return size, steps


class DCGANGenerator(Generator):
    """Radford et al. 2016: z (as a 1x1 map) -> transposed conv to the start size ->
    [ConvTranspose 4x4 stride 2 -> BatchNorm -> ReLU] ... -> image channels, tanh. Channels
    halve at every doubling and end at `width` before the output layer: 64x64 images go
    4x4x8w -> 8x8x4w -> 16x16x2w -> 32x32xw -> 64x64xC; 28x28 go 7x7x2w -> 14x14xw -> 28x28xC."""

    def __init__(self, latent_dim: PosInt, out_shape: Shape, width: PosInt = 64, batch_norm: bool = True,
                 init: Literal[INITS] = "dcgan_normal", **conditioning):
        super().__init__(latent_dim, **conditioning)
        self.out_shape = tuple(out_shape)
        start, steps = pyramid(out_shape)
        channels = width * 2 ** (steps - 1)
        layers: list[nn.Module] = [nn.Unflatten(1, (self.in_dim, 1, 1))]
        layers += self.block(nn.ConvTranspose2d(self.in_dim, channels, start, 1, 0, bias=not batch_norm), channels, batch_norm)
        for _ in range(steps - 1):
            up = nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=not batch_norm)
            layers += self.block(up, channels // 2, batch_norm)
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, out_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self.net, init)

    @staticmethod
    def block(conv: nn.Module, channels: int, batch_norm: bool) -> list[nn.Module]:
        return [conv, *([nn.BatchNorm2d(channels)] if batch_norm else []), nn.ReLU()]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.input(z, labels))


class DCGANDiscriminator(Discriminator):
    """The mirror of DCGANGenerator: [Conv 4x4 stride 2 -> BatchNorm -> LeakyReLU(0.2)] down to
    the start size (no pooling; no BatchNorm on the input layer), then the flattened features
    to one logit. `concat` conditioning adds the label embedding as constant input channels."""

    def __init__(self, in_shape: Shape, width: PosInt = 64, negative_slope: NonNegFloat = 0.2, batch_norm: bool = True,
                 init: Literal[INITS] = "dcgan_normal", spectral_norm: bool = False, **conditioning):
        super().__init__(**conditioning)
        start, steps = pyramid(in_shape)
        channels = width
        layers: list[nn.Module] = [nn.Conv2d(in_shape[0] + self.label_dim, channels, 4, 2, 1), nn.LeakyReLU(negative_slope)]
        for _ in range(steps - 1):
            layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=not batch_norm),
                       *([nn.BatchNorm2d(channels * 2)] if batch_norm else []), nn.LeakyReLU(negative_slope)]
            channels *= 2
        layers.append(nn.Flatten())
        self.build(nn.Sequential(*layers), channels * start * start, init, spectral_norm)

    join = staticmethod(label_maps)
