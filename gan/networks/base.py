"""What every network shares: the generator's noise and label embedding, the discriminator's
head and conditioning, weight initialisation, spectral norm."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan.config.constraints import PosInt

INITS = ("glorot_uniform", "torch_default", "dcgan_normal")
NOISES = ("normal", "uniform")
CONDITIONINGS = ("concat", "projection", "auxiliary")
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
    <embed(y), h>; with `concat` the label embedding joins the input (`join`); with `auxiliary`
    (AC-GAN, Odena et al. 2017) D does not see the label but also classifies the image: its output
    is then (N, 1 + classes), the logit first and the class logits after it (gan/module.py splits it)."""

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
        self.embed = label_embedding(self.conditioning in ("concat", "projection"), self.num_classes or 0, dim)
        self.classifier = nn.Linear(features, self.num_classes) if self.auxiliary else None
        init_weights(self, init)
        if use_spectral_norm:
            apply_spectral_norm(self)

    @property
    def auxiliary(self) -> bool:
        """Whether D classifies its images (AC-GAN) instead of seeing their labels."""
        return self.conditioning == "auxiliary"

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
        if self.auxiliary:
            return torch.cat([logit[:, None], self.classifier(h)], dim=1)
        return logit


def label_maps(x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """`concat` conditioning of a convolutional D: the label embedding as constant input channels."""
    return torch.cat([x, embedded[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)


def apply_spectral_norm(module: nn.Module) -> None:
    """Miyato et al. 2018: every weight divided by its largest singular value (one power
    iteration per training forward pass), label embeddings included."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Embedding)):
            spectral_norm(layer)


def keras_param_count(module: nn.Module) -> int:
    """Parameters as Keras's summary counts them: BatchNorm's running mean and variance
    are (non-trainable) weights there, so they count; PyTorch keeps them as buffers."""
    running = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return sum(p.numel() for p in module.parameters()) + running
