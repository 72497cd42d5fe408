"""Residual GANs of the SNGAN/BigGAN family, 32 to 256 px.

G (Miyato et al. 2018, as pfnet-research/sngan_projection and torch-mimicry build it): z ->
linear to a 4x4 map -> up-sampling residual blocks [BN -> ReLU -> bilinear 2x -> conv3 -> BN ->
ReLU -> conv3, plus a 1x1 conv of the up-sampled input] -> BN -> ReLU -> conv3 -> tanh. A
conditional G uses class-conditional BatchNorm whose gains and biases are linear in one label
embedding shared by every layer (Brock et al. 2019). D: residual blocks [ReLU -> conv3 -> ReLU
-> conv3 -> average-pool 2x, plus a 1x1 conv then pool] (the first without the leading ReLU),
ReLU, global sum pooling, a linear head and, conditional, the projection <embed(y), h> (Miyato &
Koyama 2018); spectral norm on every D weight by default. Channels follow the image size the way
the references do (`RESNET_PRESETS`), as multiples of `width`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gan.config.constraints import PosInt
from gan.networks.base import NOISES, Discriminator, Generator, Shape, apply_spectral_norm, check_labels, label_maps

# Channels as multiples of `width` (64 in the references): G's at 4x4 and after each up-sampling
# block; D's after each block, the first `downsample` of them halving the map.
RESNET_PRESETS = {
    32: {"generator": (4, 4, 4, 4), "discriminator": (2, 2, 2, 2), "downsample": 2},  # SNGAN CIFAR-10 (G 256, D 128 channels)
    64: {"generator": (16, 8, 4, 2, 1), "discriminator": (1, 2, 4, 8, 16), "downsample": 5},  # torch-mimicry sngan_64
    128: {"generator": (16, 16, 8, 4, 2, 1), "discriminator": (1, 2, 4, 8, 16, 16), "downsample": 5},  # sngan_projection 128
    256: {"generator": (16, 16, 8, 8, 4, 2, 1), "discriminator": (1, 2, 4, 8, 8, 16, 16), "downsample": 6},  # its 256
}


def preset(image_shape: Sequence[int], which: str, multipliers: Sequence[int] | None):
    """The channel multipliers of `which` network for square images of this size, or `multipliers`."""
    _, height, width = image_shape
    if height != width or (multipliers is None and height not in RESNET_PRESETS):
        raise ValueError(f"ResNet networks have presets for square images of {sorted(RESNET_PRESETS)} px, got "
                         f"{list(image_shape)}: pad the images (MNIST: data.pad=2 data.image_shape=[1,32,32]), resize them "
                         f"(data.image_size of a folder), or give the multipliers")
    return tuple(multipliers or RESNET_PRESETS[height][which])


def xavier(conv: nn.Module, gain: float = 1.0) -> nn.Module:
    """The references' initialisation: Glorot-uniform weights (gain sqrt 2 inside residual branches), zero biases."""
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine whose per-channel gain (1 + .) and bias are linear in the
    shared label embedding (BigGAN's ccbn, so the label shapes G from the start); unconditional,
    plain BatchNorm."""

    def __init__(self, channels: int, embedding_dim: int | None, batch_norm: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=embedding_dim is None) if batch_norm else nn.Identity()
        if embedding_dim is not None:
            self.gain, self.bias = nn.Linear(embedding_dim, channels, bias=False), nn.Linear(embedding_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, embedded: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if embedded is None:
            return x
        return x * (1 + self.gain(embedded))[:, :, None, None] + self.bias(embedded)[:, :, None, None]


class UpBlock(nn.Module):
    """G's residual block: doubles the map, `in_channels` -> `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int | None, batch_norm: bool = True):
        super().__init__()
        self.norm1 = ConditionalBatchNorm(in_channels, embedding_dim, batch_norm)
        self.norm2 = ConditionalBatchNorm(out_channels, embedding_dim, batch_norm)
        self.conv1 = xavier(nn.Conv2d(in_channels, out_channels, 3, 1, 1), 2 ** 0.5)
        self.conv2 = xavier(nn.Conv2d(out_channels, out_channels, 3, 1, 1), 2 ** 0.5)
        self.shortcut = xavier(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, embedded: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, embedded)), scale_factor=2, mode="bilinear", align_corners=False)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), embedded)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class DownBlock(nn.Module):
    """D's residual block; `first`: the references' optimised first block (no ReLU before its
    first conv, the shortcut pooled before its 1x1 conv). A block that neither halves the map nor
    changes the channels keeps the identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, first: bool = False):
        super().__init__()
        hidden = out_channels if first else in_channels
        self.conv1 = xavier(nn.Conv2d(in_channels, hidden, 3, 1, 1), 2 ** 0.5)
        self.conv2 = xavier(nn.Conv2d(hidden, out_channels, 3, 1, 1), 2 ** 0.5)
        learned = first or downsample or in_channels != out_channels
        self.shortcut = xavier(nn.Conv2d(in_channels, out_channels, 1)) if learned else nn.Identity()
        self.downsample, self.first = downsample, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        pool = F.avg_pool2d if self.downsample else (lambda t, _: t)
        shortcut = self.shortcut(pool(x, 2)) if self.first else pool(self.shortcut(x), 2)
        return pool(h, 2) + shortcut


class ResNetGenerator(Generator):
    """z -> 4x4 map -> len(multipliers) - 1 up-sampling residual blocks -> image, tanh."""

    def __init__(self, latent_dim: PosInt, out_shape: Shape, width: PosInt = 64, multipliers: Sequence[PosInt] | None = None,
                 spectral_norm: bool = False, batch_norm: bool = True, noise: Literal[NOISES] = "normal",
                 conditional: bool = False, num_classes: PosInt | None = 10, label_dim: PosInt = 128):
        """`multipliers`: the channels at 4x4 and after each block, in units of `width` (null: the
        preset for the image size); `spectral_norm`: on G's weights too (BigGAN; SNGAN: off);
        `batch_norm`: false drops the normalisation (the label then has nowhere to enter, so a
        conditional G keeps it); `label_dim`: the shared label embedding's width (conditional)."""
        super().__init__(latent_dim, noise, conditional, num_classes, label_dim)
        if conditional and not batch_norm:
            raise ValueError("a conditional ResNet generator takes its label through class-conditional BatchNorm: "
                             "model.generator.batch_norm=false needs model.conditional=false")
        self.out_shape = tuple(out_shape)
        channels = [m * width for m in preset(out_shape, "generator", multipliers)]
        if 4 * 2 ** (len(channels) - 1) != out_shape[1]:
            raise ValueError(f"{len(channels)} generator multipliers make {4 * 2 ** (len(channels) - 1)} px images, "
                             f"not {out_shape[1]}: give one per doubling from 4 px, plus one")
        self.in_dim = latent_dim  # the label conditions the BatchNorms, it does not join z
        embedded = label_dim if conditional else None
        self.start = xavier(nn.Linear(latent_dim, 16 * channels[0]))
        self.blocks = nn.ModuleList(UpBlock(a, b, embedded, batch_norm) for a, b in zip(channels, channels[1:]))
        self.norm = nn.BatchNorm2d(channels[-1]) if batch_norm else nn.Identity()
        self.to_image = xavier(nn.Conv2d(channels[-1], out_shape[0], 3, 1, 1))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, labels)
        embedded = None if self.embed is None else self.embed(labels).to(z.dtype)
        h = self.start(z).view(len(z), -1, 4, 4)
        for block in self.blocks:
            h = block(h, embedded)
        return torch.tanh(self.to_image(F.relu(self.norm(h))))


class ResNetDiscriminator(Discriminator):
    """image -> residual blocks (the first `downsample` halving the map) -> ReLU -> global sum
    pooling -> one logit (+ the projection of the label, or the label as input maps)."""

    def __init__(self, in_shape: Shape, width: PosInt = 64, multipliers: Sequence[PosInt] | None = None,
                 downsample: PosInt | None = None, spectral_norm: bool = True, **conditioning):
        """`multipliers`: each block's channels in units of `width` (null: the preset for the
        image size); `downsample`: how many of the first blocks halve the map (null: the preset's)."""
        super().__init__(**conditioning)
        channels = [m * width for m in preset(in_shape, "discriminator", multipliers)]
        halvings = downsample or RESNET_PRESETS.get(in_shape[1], {}).get("downsample") or len(channels)
        if halvings > len(channels) or in_shape[1] % 2 ** halvings:
            raise ValueError(f"downsample={halvings} halvings do not fit {len(channels)} blocks on {in_shape[1]} px images")
        widths = [in_shape[0] + self.label_dim, *channels]
        blocks = [DownBlock(a, b, i < halvings, first=i == 0) for i, (a, b) in enumerate(zip(widths, widths[1:]))]
        body = nn.Sequential(*blocks, nn.ReLU(), SumPool())
        self.build(body, channels[-1], "torch_default", use_spectral_norm=False)
        xavier(self.head)
        if spectral_norm:
            apply_spectral_norm(self)

    join = staticmethod(label_maps)


class SumPool(nn.Module):
    """Global sum pooling over the map (the references' D head input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))
