"""Generator and discriminator architectures, built from config (`model` group)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

INITS = ("glorot_uniform", "torch_default")


def init_linear_layers(module: nn.Module, init: str) -> None:
    """Keras Dense layers start from Glorot-uniform weights and zero biases; PyTorch's
    nn.Linear default (Kaiming-uniform, a=sqrt(5)) is kept with `torch_default`."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "torch_default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class MLPGenerator(nn.Module):
    """z -> [Linear -> LeakyReLU -> BatchNorm] * len(hidden_dims) -> Linear -> tanh -> image.

    The seed (Keras) puts BatchNorm *after* the activation, with Keras momentum 0.8
    (PyTorch momentum 0.2) and eps 1e-3; PyTorch-GAN's `BatchNorm1d(n, 0.8)` sets eps=0.8 by
    mistake, which is why both numbers are explicit here.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_dims: Sequence[int],
        out_shape: Sequence[int],
        negative_slope: float = 0.2,
        batch_norm: bool = True,
        bn_momentum: float = 0.2,
        bn_eps: float = 1e-3,
        init: str = "glorot_uniform",
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(negative_slope)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden, eps=bn_eps, momentum=bn_momentum))
            width = hidden
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh(), nn.Unflatten(1, self.out_shape)]
        self.net = nn.Sequential(*layers)
        init_linear_layers(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """image -> Flatten -> [Linear -> LeakyReLU] * len(hidden_dims) -> Linear -> one logit.

    Returns logits, not probabilities: the sigmoid lives in the loss (BCE-with-logits), the
    same maths as the seed's sigmoid + binary cross-entropy but numerically stable.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_dims: Sequence[int],
        negative_slope: float = 0.2,
        init: str = "glorot_uniform",
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(negative_slope)]
            width = hidden
        layers += [nn.Linear(width, 1), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)
        init_linear_layers(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def keras_param_count(module: nn.Module) -> int:
    """Parameters as Keras's summary counts them: BatchNorm's running mean and variance
    are (non-trainable) weights there, so they count; PyTorch keeps them as buffers."""
    running = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return sum(p.numel() for p in module.parameters()) + running
