"""What is random in a GAN iteration, drawn for the global batch from (seed, iteration) alone.

Iteration t's noise, G's labels, the gradient penalty's mixing weights and the augmentation's
draws for every image D sees (gan/augment/) come from generators seeded by (seed, t), at the
size of the global batch (`data.batch_size`); each process keeps its own rows, as it keeps its
rows of the real batch (gan/data/batches.py draws the indices the same way). So a run on W
processes trains on exactly the data and noise of a run on one, a resumed run draws what the
uninterrupted run would have (whatever the number of processes or the iterations per step), and
nothing depends on how many draws came before.

The draws are made before the iteration runs and handed to it, so a CUDA graph replaying the
iteration takes them as inputs like the real batch (gan/engine/cuda_graphs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from gan.augment import Augment, NoAugment

NOISE_STREAM = 1  # (the batch indices use their own seeding, gan/data/batches.py)
AUGMENT_STREAM = 2  # its own, so that turning augmentation on changes no other draw


def stream_seed(seed: int, t: int, stream: int) -> int:
    """A well-mixed 63-bit seed for (seed, iteration, stream): neighbouring iterations and the
    other streams get unrelated generators."""
    return int(np.random.SeedSequence([seed, t, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def rows_of(draws: NamedTuple | None, views: int, rows: slice) -> list[NamedTuple | None]:
    """Augmentation draws made for `views` consecutive global batches, split into one per view
    and cut to this process's `rows` of each."""
    if draws is None:
        return [None] * views
    split = [field.view(views, -1, *field.shape[1:])[:, rows] for field in draws]
    return [type(draws)(*(field[v] for field in split)) for v in range(views)]


class Draws(NamedTuple):
    """One iteration's randomness, this process's rows: z of each D step's fakes (n_critic, b,
    latent), z and labels of the G step (b, latent), (b,), the gradient penalty's mixing
    weight per pair and D step (n_critic, b), the augmentation's draws for each batch D
    sees (the reals and the fakes of each D step, then the G step's fakes, then its reals with
    a pairwise loss; empty without augmentation), and with lazy regularisation whether each D
    step adds the penalties (a function of t, not random: empty means every one does; a CUDA
    graph is captured for each pattern)."""

    d_noise: torch.Tensor
    g_noise: torch.Tensor
    g_labels: torch.Tensor | None
    mix: torch.Tensor | None
    seen: tuple = ()
    penalized: tuple[bool, ...] = ()

    def d_seen(self, i: int) -> tuple:
        """The augmentation draws of D step i's reals and fakes."""
        return (self.seen[2 * i], self.seen[2 * i + 1]) if self.seen else (None, None)

    @property
    def g_seen(self):
        """The augmentation draws of the G step's fakes."""
        return self.seen[2 * len(self.d_noise)] if self.seen else None

    @property
    def g_real_seen(self):
        """The augmentation draws of the G step's reals (a pairwise loss), or None."""
        return self.seen[2 * len(self.d_noise) + 1] if len(self.seen) > 2 * len(self.d_noise) + 1 else None


class IterationDraws:
    """Draws(t) for a generator network, `n_critic` D steps of the global `batch_size`, and the
    rows of process `rank` of `world` (the batch is split in equal consecutive slices); with an
    `augment` (gan/augment/), its draws for images of `size` (H, W), and for G's reals too when
    the loss compares `pairs`; `lazy`: with lazy regularisation, whether D step number s of the run
    adds the penalties (`Loss.penalized`)."""

    def __init__(self, generator: torch.nn.Module, n_critic: int, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world: int = 1, penalty: bool = False, augment: Augment | None = None,
                 size: tuple[int, int] = (0, 0), pairs: bool = False, lazy: Callable[[int], bool] | None = None):
        assert batch_size % world == 0, "checked before training (gan/engine/distributed.py, gan/data/batches.py)"
        self.net, self.n_critic, self.batch, self.seed, self.penalty = generator, n_critic, batch_size, seed, penalty
        self.size, self.pairs, self.lazy = tuple(size), pairs, lazy
        self.use(augment)
        self.rows = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
        self.rng = torch.Generator(device=device)
        self.device = device

    def use(self, augment: Augment | None) -> None:
        """Draw for `augment` from now on (gan.bench switches it between blocks)."""
        self.augment = augment
        self.augmenting = augment is not None and not isinstance(augment, NoAugment)  # (no seeding cost without)

    def __call__(self, t: int) -> Draws:
        self.rng.manual_seed(stream_seed(self.seed, t, NOISE_STREAM))
        n_critic, batch, rows = self.n_critic, self.batch, self.rows
        d_noise = self.net.draw_noise(n_critic * batch, rng=self.rng, device=self.device).view(n_critic, batch, -1)
        g_labels = None
        if self.net.num_classes is not None:
            g_labels = torch.randint(self.net.num_classes, (batch,), generator=self.rng, device=self.device)[rows]
        g_noise = self.net.draw_noise(batch, rng=self.rng, device=self.device)[rows]
        mix = torch.rand(n_critic, batch, generator=self.rng, device=self.device)[:, rows] if self.penalty else None
        penalized = () if self.lazy is None else tuple(self.lazy(t * n_critic + i) for i in range(n_critic))
        if not self.augmenting:
            return Draws(d_noise[:, rows], g_noise, g_labels, mix, (), penalized)
        self.rng.manual_seed(stream_seed(self.seed, t, AUGMENT_STREAM))
        views = 2 * n_critic + 1 + self.pairs
        seen = self.augment.draw(views * batch, self.size, self.rng, self.device)
        return Draws(d_noise[:, rows], g_noise, g_labels, mix, tuple(rows_of(seen, views, rows)), penalized)
