"""Generator and discriminator architectures, built from config (`model` group).

Every generator takes `(z, labels=None)` and every discriminator `(x, labels=None)`, returning
one logit per image. `labels` are used only by conditional networks (`model.conditional=true`):
G concatenates a label embedding to z (Mirza & Osindero 2014); D either concatenates one to
its input (`concat`) or adds the inner product of one with its last features (`projection`,
Miyato & Koyama 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan.config.constraints import Fraction, NonNegFloat, PosFloat, PosInt, Widths

INITS = ("glorot_uniform", "torch_default", "dcgan_normal")
NOISES = ("normal", "uniform")
CONDITIONINGS = ("concat", "projection")
Shape = tuple[PosInt, PosInt, PosInt]  # channels, height, width


def init_weights(module: nn.Module, init: str) -> None:
    """glorot_uniform: Keras's default for Dense and Conv layers (Glorot-uniform weights, zero
    biases). dcgan_normal: Radford et al. 2016, weights N(0, 0.02) (BatchNorm scales N(1, 0.02)).
    torch_default: PyTorch's own (Kaiming-uniform, a=sqrt(5)). Label embeddings keep N(0, 1)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "torch_default":
        return
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if init == "glorot_uniform":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and init == "dcgan_normal":
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


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


def label_embedding(conditional: bool, num_classes: int, dim: int) -> nn.Embedding | None:
    if conditional and (num_classes < 2 or dim < 1):
        raise ValueError(f"a conditional network needs num_classes >= 2 and a label width >= 1, got {num_classes}, {dim}")
    return nn.Embedding(num_classes, dim) if conditional else None


def check_labels(net: nn.Module, labels: torch.Tensor | None) -> None:
    if (labels is None) != (net.num_classes is None):
        raise ValueError("labels must be given to a conditional network and only to one")


class Generator(nn.Module):
    """What every generator shares: its noise and, when conditional, its label embedding."""

    def __init__(self, latent_dim: PosInt, noise: Literal[NOISES] = "normal", conditional: bool = False,
                 num_classes: PosInt | None = 10, label_dim: PosInt = 10):
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        self.latent_dim, self.noise = latent_dim, noise
        self.num_classes = num_classes if conditional else None
        self.embed = label_embedding(conditional, num_classes or 0, label_dim)
        self.in_dim = latent_dim + (label_dim if conditional else 0)

    def draw_noise(self, n: int, rng: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
        """z ~ N(0, I) (`normal`) or U(-1, 1) (`uniform`, as DCGAN draws it), drawn where `rng`
        lives (else on `device` by its default generator), then moved to `device`."""
        where = rng.device if rng is not None else device or "cpu"
        if self.noise == "normal":
            z = torch.randn(n, self.latent_dim, generator=rng, device=where)
        else:
            z = torch.rand(n, self.latent_dim, generator=rng, device=where) * 2 - 1
        return z.to(device, dtype)  # a no-op when both are None

    def input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        check_labels(self, labels)
        return z if self.embed is None else torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)


class Discriminator(nn.Module):
    """body(x) -> features h -> linear head; with `projection` the logit also gets
    <embed(y), h>; with `concat` the label embedding joins the input (`join`)."""

    def __init__(self, conditional: bool = False, num_classes: PosInt | None = 10,
                 conditioning: Literal[CONDITIONINGS] = "concat", label_dim: PosInt = 10):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        self.num_classes = num_classes if conditional else None
        self.conditioning = conditioning if conditional else None
        self.label_dim = label_dim if self.conditioning == "concat" else 0  # extra input width

    def build(self, body: nn.Module, features: int, init: str, use_spectral_norm: bool) -> None:
        """Called by subclasses once `body` exists: a projection embedding is as wide as its output."""
        self.body, self.head = body, nn.Linear(features, 1)
        dim = features if self.conditioning == "projection" else self.label_dim
        self.embed = label_embedding(self.conditioning is not None, self.num_classes or 0, dim)
        init_weights(self, init)
        if use_spectral_norm:
            apply_spectral_norm(self)

    def join(self, x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, labels)
        if self.conditioning == "concat":
            x = self.join(x, self.embed(labels).to(x.dtype))
        h = self.body(x)
        logit = self.head(h).squeeze(1)
        if self.conditioning == "projection":
            logit = logit + (self.embed(labels).to(h.dtype) * h).sum(1)
        return logit


def apply_spectral_norm(module: nn.Module) -> None:
    """Miyato et al. 2018: every weight divided by its largest singular value (one power
    iteration per training forward pass), label embeddings included."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Embedding)):
            spectral_norm(layer)


class MLPGenerator(Generator):
    """z -> [Linear -> LeakyReLU -> BatchNorm] * len(hidden_dims) -> Linear -> tanh -> image.

    The Keras example puts BatchNorm *after* the activation, with Keras momentum 0.8
    (PyTorch momentum 0.2) and eps 1e-3; PyTorch-GAN's `BatchNorm1d(n, 0.8)` sets eps=0.8 by
    mistake, which is why both numbers are explicit here.
    """

    def __init__(
        self,
        latent_dim: PosInt,
        hidden_dims: Widths,
        out_shape: Shape,
        negative_slope: NonNegFloat = 0.2,
        batch_norm: bool = True,
        bn_momentum: Fraction = 0.2,
        bn_eps: PosFloat = 1e-3,
        init: Literal[INITS] = "glorot_uniform",
        **conditioning,
    ):
        super().__init__(latent_dim, **conditioning)
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        width = self.in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(negative_slope)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden, eps=bn_eps, momentum=bn_momentum))
            width = hidden
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh(), nn.Unflatten(1, self.out_shape)]
        self.net = nn.Sequential(*layers)
        init_weights(self.net, init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.input(z, labels))


class MLPDiscriminator(Discriminator):
    """image -> Flatten -> [Linear -> LeakyReLU] * len(hidden_dims) -> Linear -> one logit.

    Returns logits, not probabilities: the sigmoid lives in the loss (BCE-with-logits), the
    same maths as the Keras example's sigmoid + binary cross-entropy but numerically stable.
    """

    def __init__(
        self,
        in_shape: Shape,
        hidden_dims: Widths,
        negative_slope: NonNegFloat = 0.2,
        init: Literal[INITS] = "glorot_uniform",
        spectral_norm: bool = False,
        **conditioning,
    ):
        super().__init__(**conditioning)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape) + self.label_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(negative_slope)]
            width = hidden
        self.build(nn.Sequential(*layers), width, init, spectral_norm)

    def join(self, x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.flatten(1), embedded], dim=1)


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

    def join(self, x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, embedded[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)


def keras_param_count(module: nn.Module) -> int:
    """Parameters as Keras's summary counts them: BatchNorm's running mean and variance
    are (non-trainable) weights there, so they count; PyTorch keeps them as buffers."""
    running = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return sum(p.numel() for p in module.parameters()) + running
