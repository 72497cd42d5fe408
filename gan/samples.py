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


def truncate(z: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick on the input noise: z pulled toward the mean of its distribution,
    mean + psi (z - mean), where the mean is 0 for both N(0, I) and U(-1, 1). psi=1 leaves z as it is."""
    return z if psi == 1 else z * psi


class Truncated(nn.Module):
    """A generator whose noise is drawn truncated (`truncate`): every consumer of `draw_noise`
    (grids, walks, class sheets, the evaluation) trades variety for typical samples the same way."""

    def __init__(self, generator: nn.Module, psi: float):
        super().__init__()
        self.generator, self.psi = generator, psi
        self.latent_dim, self.noise, self.num_classes = generator.latent_dim, generator.noise, generator.num_classes

    def draw_noise(self, n: int, rng: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
        return truncate(self.generator.draw_noise(n, rng, device, dtype), self.psi)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)


def truncated(generator: nn.Module, psi: float) -> nn.Module:
    """`generator` with its noise truncated by psi in (0, 1]; psi=1 is the generator itself."""
    check_truncation(psi)
    return generator if psi == 1 else Truncated(generator, psi)


def check_truncation(psi: float) -> None:
    if not 0 < psi <= 1:
        raise UserError(f"truncation={psi}: psi must lie in (0, 1]: 1 draws the noise as trained, smaller values pull "
                        f"it toward its mean (fewer odd samples, less variety; 0.7 is a common choice).")


def interpolate(a: torch.Tensor, b: torch.Tensor, t: float, spherical: bool) -> torch.Tensor:
    """The point t in [0, 1] of the way from each row of `a` to the same row of `b`: along the
    great circle (slerp, for normal noise: its samples lie near a sphere, and a straight line
    between two passes through the low-density middle) or straight (lerp, for uniform noise).
    t=0 is `a` itself and t=1 `b` itself, bit for bit."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    if not spherical:
        return a + t * (b - a)
    a64, b64 = a.double(), b.double()
    cos = ((a64 * b64).sum(1) / (a64.norm(dim=1) * b64.norm(dim=1)).clamp_min(1e-30)).clamp(-1, 1)
    omega = torch.arccos(cos)[:, None]
    sin = torch.sin(omega)
    straight = sin.abs() < 1e-6  # (anti)parallel rows: the circle is not defined, the line is as good
    wa = torch.where(straight, 1 - t, torch.sin((1 - t) * omega) / sin.where(~straight, 1.0))
    wb = torch.where(straight, t, torch.sin(t * omega) / sin.where(~straight, 1.0))
    return (wa * a64 + wb * b64).to(a.dtype)


def walk(keys: list[torch.Tensor], frames: int, loop: bool, spherical: bool) -> Iterator[tuple[torch.Tensor, int | None]]:
    """Each frame's noise on a walk through `keys`, `frames` per segment from one key to the next,
    ending on the last key (or, with `loop`, heading back to the first, which is not repeated), with
    the index of the key a frame is (None between keys)."""
    segments = len(keys) if loop else len(keys) - 1
    for segment in range(segments):
        a, b = keys[segment], keys[(segment + 1) % len(keys)]
        for j in range(frames):
            yield (a, segment) if j == 0 else (interpolate(a, b, j / frames, spherical), None)
    if not loop:
        yield keys[-1], len(keys) - 1


def walk_length(keys: int, frames: int, loop: bool) -> int:
    return frames * keys if loop else frames * (keys - 1) + 1
