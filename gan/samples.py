"""Samples of a trained generator: fixed noise, balanced classes, any device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from gan.errors import UserError


def balanced_labels(n: int, num_classes: int | None, label: int | None = None) -> torch.Tensor | None:
    """Labels for n samples of a conditional generator: all `label`, or the classes in turn
    (0, 1, ..., 9, 0, 1, ...); None for an unconditional one (which must not be given a label)."""
    if num_classes is None:
        if label is not None:
            raise UserError(f"label={label}: this generator is not conditional (model.conditional=false), so it takes no class.")
        return None
    if label is None:
        return torch.arange(n) % num_classes
    if not 0 <= label < num_classes:
        raise UserError(f"label={label}: this generator knows classes 0 to {num_classes - 1}.")
    return torch.full((n,), label)


@torch.no_grad()
def generated_batches(generator: nn.Module, n: int, seed: int = 0, label: int | None = None,
                      batch_size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """n samples in [-1, 1] from a fixed noise (same seed, same samples), a batch at a time on
    the generator's device, with their labels: a conditional generator gets `balanced_labels`."""
    noise = generator.draw_noise(n, torch.Generator().manual_seed(seed))
    labels = balanced_labels(n, generator.num_classes, label)
    parameter = next(generator.parameters())
    for i in range(0, n, batch_size):
        y = None if labels is None else labels[i : i + batch_size].to(parameter.device)
        yield generator(noise[i : i + batch_size].to(parameter.device, parameter.dtype), y).float(), y


def generate(generator: nn.Module, n: int, seed: int = 0, label: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """The n samples of `generated_batches`, on the CPU."""
    return torch.cat([images.cpu() for images, _ in generated_batches(generator, n, seed, label, batch_size)])
