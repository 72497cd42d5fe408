"""The Keras example's multi-layer perceptrons (the origin of `experiment=keras_seed`)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from gan.config.constraints import Fraction, NonNegFloat, PosFloat, PosInt, Widths
from gan.networks.base import INITS, Discriminator, Generator, Shape, init_weights


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
