"""The R3GAN backbone (Huang et al. 2024, "The GAN is dead; long live the GAN!", brownvc/R3GAN).

A modernised StyleGAN2 with nothing but convolutions: each stage is a transition (G: a learned
4x4 basis, then bilinear 2x up-sampling; D: bilinear 2x down-sampling, then a learned 4x4
basis) and residual blocks [1x1 conv -> bias + LeakyReLU -> grouped kxk conv (`cardinality`
groups) -> bias + LeakyReLU -> 1x1 conv] whose middle is `expansion` times wider (an inverted
bottleneck). No normalisation layers: the fix-up initialisation keeps the signal's variance
instead, the branches' weights drawn with variance gain^2/fan-in scaled down by the number of
blocks L as L^(-1/(2m-2)) for m = 3 layers per branch, and the last layer of each branch at zero,
so at step 0 every block is the identity. G's output is linear (no tanh), as the paper's.

The stage lists run from the 4x4 stage up, for G and D alike (D's stages run the other way, as
the paper reverses G's lists for it), so one list in the config sets both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gan.config.constraints import PosInt
from gan.networks.base import NOISES, Generator, Shape, check_labels

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + LEAKY_SLOPE**2))  # keeps a leaky ReLU's output variance
LAYERS_PER_BRANCH = 3


def msr(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """Weights N(0, gain^2 / fan-in) (He et al. 2015; R3GAN's MSRInitializer), no bias."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    return layer


def conv(in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    return msr(nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, groups=groups, bias=False), gain)


class BiasedActivation(nn.Module):
    """A learned per-channel bias, then LeakyReLU(0.2) (R3GAN's bias_act)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, *([1] * (x.dim() - 2))), LEAKY_SLOPE)


class ResidualBlock(nn.Module):
    """x + 1x1(act(grouped kxk(act(1x1(x))))), the middle `expansion` times wider; `blocks`: how
    many residual blocks the network has in all (the fix-up scaling)."""

    def __init__(self, channels: int, cardinality: int, expansion: int, kernel_size: int, blocks: int):
        super().__init__()
        wide, gain = channels * expansion, ACTIVATION_GAIN * blocks ** (-1 / (2 * LAYERS_PER_BRANCH - 2))
        self.branch = nn.Sequential(conv(channels, wide, gain=gain), BiasedActivation(wide),
                                    conv(wide, wide, kernel_size, groups=cardinality, gain=gain), BiasedActivation(wide),
                                    conv(wide, channels, gain=0.0))  # fix-up: the branch starts at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def lowpass(taps: Sequence[float]) -> torch.Tensor:
    """The 2-D resampling kernel of a 1-D filter, widened by [1, 1] for the factor 2 and summing to 1
    ([1, 2, 1] -> the outer product of [1, 3, 3, 1]: bilinear interpolation)."""
    row = torch.tensor(list(taps), dtype=torch.float64)
    row = torch.nn.functional.conv1d(row.view(1, 1, -1), torch.ones(1, 1, 2, dtype=torch.float64), padding=1).flatten()
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


class Resample(nn.Module):
    """2x bilinear up- or down-sampling of every channel by the filter `taps` (R3GAN's
    interpolative resamplers, in plain convolutions), with a 1x1 conv where the width changes (G:
    before up-sampling, D: after down-sampling, so it runs on the smaller map)."""

    def __init__(self, in_channels: int, out_channels: int, up: bool, taps: Sequence[float]):
        super().__init__()
        self.up, self.pad = up, len(taps) // 2
        self.register_buffer("kernel", lowpass(taps)[None, None] * (4 if up else 1), persistent=False)
        self.linear = conv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = self.linear(x)
        n, c, h, w = x.shape
        resample = F.conv_transpose2d if self.up else F.conv2d
        y = resample(x.reshape(n * c, 1, h, w), self.kernel.to(x.dtype), stride=2, padding=self.pad)
        y = y.view(n, c, *y.shape[2:])
        return y if self.up else self.linear(y)


def stages_for(image_shape: Sequence[int], widths: Sequence[int], cardinalities: Sequence[int], blocks: Sequence[int],
               expansion: int) -> None:
    """Refuse stage lists that do not fit the images or each other, naming the keys."""
    _, height, width = image_shape
    if not len(widths) == len(cardinalities) == len(blocks):
        raise ValueError(f"model.widths, model.cardinalities and model.blocks need one entry per stage each, got "
                         f"{len(widths)}, {len(cardinalities)} and {len(blocks)}")
    if height != width or height != 4 * 2 ** (len(widths) - 1):
        raise ValueError(f"{len(widths)} stages in model.widths make {4 * 2 ** (len(widths) - 1)} px square images, but "
                         f"data.image_shape={list(image_shape)}: one stage for 4 px and one per doubling (32 px: 4, 64: 5), or "
                         f"pad the images (MNIST: data.pad=2 data.image_shape=[1,32,32])")
    for w, groups in zip(widths, cardinalities):
        if (w * expansion) % groups:
            raise ValueError(f"model.cardinalities: {groups} groups do not divide a stage's {w} x model.expansion={expansion} "
                             f"= {w * expansion} channels")


class R3GANGenerator(Generator):
    """z (with the label's embedding, conditional) -> a learned 4x4 basis scaled per channel by a
    linear map of z -> stages of residual blocks, each after a 2x up-sampling -> 1x1 conv to the image."""

    def __init__(self, latent_dim: PosInt, out_shape: Shape, widths: Sequence[PosInt], cardinalities: Sequence[PosInt],
                 blocks: Sequence[PosInt], expansion: PosInt = 2, kernel_size: PosInt = 3,
                 resampling_filter: Sequence[float] = (1, 2, 1), noise: Literal[NOISES] = "normal",
                 conditional: bool = False, num_classes: PosInt | None = 10, label_dim: PosInt = 64):
        """`widths`, `cardinalities` (groups of each grouped conv), `blocks`: per stage from 4x4
        up; `label_dim`: the label embedding joined to z (the paper: as wide as z)."""
        super().__init__(latent_dim, noise, conditional, num_classes, label_dim)
        stages_for(out_shape, widths, cardinalities, blocks, expansion)
        self.out_shape = tuple(out_shape)
        if self.embed is not None:
            one_hot_msr(self.embed)
        total = sum(blocks)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.basis_scale = msr(nn.Linear(self.in_dim, widths[0], bias=False))
        stages = []
        for i, (w, groups, n) in enumerate(zip(widths, cardinalities, blocks)):
            up = [Resample(widths[i - 1], w, True, resampling_filter)] if i else []
            stages.append(nn.Sequential(*up, *(ResidualBlock(w, groups, expansion, kernel_size, total) for _ in range(n))))
        self.stages = nn.Sequential(*stages)
        self.to_image = conv(widths[-1], out_shape[0])

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.basis[None] * self.basis_scale(self.input(z, labels))[:, :, None, None]
        return self.to_image(self.stages(h))


def one_hot_msr(embedding: nn.Embedding, gain: float = 1.0) -> None:
    """`msr` for an embedding seen as the paper's bias-free linear map of the one-hot label (fan-in: the classes)."""
    nn.init.normal_(embedding.weight, 0.0, gain / math.sqrt(embedding.num_embeddings))


class R3GANDiscriminator(nn.Module):
    """image -> 1x1 conv -> stages of residual blocks, each then a 2x down-sampling -> at 4x4 a
    learned depthwise 4x4 basis and a linear map to one logit; conditional, to an embedding
    dotted with the label's (a projection head, as the paper's)."""

    def __init__(self, in_shape: Shape, widths: Sequence[PosInt], cardinalities: Sequence[PosInt],
                 blocks: Sequence[PosInt], expansion: PosInt = 2, kernel_size: PosInt = 3,
                 resampling_filter: Sequence[float] = (1, 2, 1), conditional: bool = False,
                 num_classes: PosInt | None = 10, label_dim: PosInt | None = None):
        """The stage lists as G's (from 4x4 up); `label_dim`: the projection's width (the paper,
        and null here: the 4x4 stage's width)."""
        super().__init__()
        stages_for(in_shape, widths, cardinalities, blocks, expansion)
        self.num_classes = num_classes if conditional else None
        widths, cardinalities, blocks = widths[::-1], cardinalities[::-1], blocks[::-1]  # from the image down
        total, out = sum(blocks), (label_dim or widths[-1]) if conditional else 1
        self.from_image = conv(in_shape[0], widths[0])
        stages = []
        for i, (w, groups, n) in enumerate(zip(widths, cardinalities, blocks)):
            down = [Resample(w, widths[i + 1], False, resampling_filter)] if i + 1 < len(widths) else []
            stages.append(nn.Sequential(*(ResidualBlock(w, groups, expansion, kernel_size, total) for _ in range(n)), *down))
        self.stages = nn.Sequential(*stages)
        self.basis = msr(nn.Conv2d(widths[-1], widths[-1], 4, groups=widths[-1], bias=False))
        self.head = msr(nn.Linear(widths[-1], out, bias=False))
        self.embed = nn.Embedding(num_classes, out) if conditional else None
        if self.embed is not None:
            one_hot_msr(self.embed, 1 / math.sqrt(out))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, labels)
        h = self.head(self.basis(self.stages(self.from_image(x))).flatten(1))
        return h.squeeze(1) if self.embed is None else (h * self.embed(labels).to(h.dtype)).sum(1)
