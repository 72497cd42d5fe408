"""What every dataset of the `data` group shares: its images as one uint8 tensor (N, C, H, W),
in memory (on the training device when they fit there) or memory-mapped from a cache file, and
the real batches of each GAN iteration drawn from (seed, iteration) as index tensors. No
per-sample Python runs while training: a step's batch is one index tensor applied to the images,
and only the indexed batch is converted to floats in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch

from gan.engine.chunks import chunk_length, event_intervals, iterations_per_step
from gan.errors import UserError

SAMPLINGS = ("with_replacement", "epochs")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> floats in [-1, 1], as the Keras example scales them (x / 127.5 - 1)."""
    return images.float().div_(127.5).sub_(1.0)


class Chunk:
    """The real batches of k consecutive GAN iterations, as one `training_step` gets them: the
    index table, where the images are stored (the training device, host memory or a memory-mapped
    file), and the device to train on. Iterating gathers one iteration's (uint8 images (n_critic,
    batch, C, H, W) on `device`, labels (n_critic, batch)) at a time, so a long chunk of large
    images costs no more memory than one iteration. GAN.iteration scales them to [-1, 1]: inside
    the CUDA graph when there is one, and a quarter of the bytes cross to the GPU."""

    def __init__(self, index: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, device: torch.device | None = None,
                 mirror: bool = False):
        """`mirror`: the index runs over the images and then over their mirror images (`data.mirror`)."""
        self.index, self.images, self.labels, self.mirror = index, images, labels, mirror
        self.device = images.device if device is None else device

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        for index in self.index:
            if not self.mirror:
                yield self.images[index].to(self.device, non_blocking=True), self.labels[index].to(self.device, non_blocking=True)
                continue
            flip, index = index >= n, index.remainder(n)
            images = self.images[index]
            images = torch.where(flip[..., None, None, None], images.flip(-1), images)
            yield images.to(self.device, non_blocking=True), self.labels[index].to(self.device, non_blocking=True)


class StepBatches:
    """Index tables of shape (k, batches_per_step, batch_size): the real batches of the k GAN
    iterations one training step runs (gan/engine/chunks.py plans k).

    The draw for iteration `t` depends only on (seed, t), so a run resumed from a checkpoint at
    step `t` sees exactly the batches an uninterrupted run would, however its iterations are
    grouped into steps: `with_replacement` draws each batch uniformly with replacement, as the
    Keras example's `np.random.randint` does; `epochs` walks a fresh permutation per pass over
    the data. The iterator never ends (Lightning's epoch is the whole run; `max_steps` ends it)
    and starts at `start_step()`, asked at each `iter()`: the iteration the trainer is at.
    `chunk_length(t)`: how many iterations the step after iteration `t` runs. With several
    processes, `batch_size` is the global batch: each draws all of it and keeps the consecutive
    slice of its `rank` among `world` (gan/engine/distributed.py).
    """

    def __init__(self, n: int, batch_size: int, batches_per_step: int, sampling: str, seed: int,
                 start_step=lambda: 0, chunk_length=lambda t: 1, rank: int = 0, world: int = 1):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.n, self.shape, self.sampling, self.seed = n, (batches_per_step, batch_size), sampling, seed
        self.start_step, self.chunk_length = start_step, chunk_length
        if batch_size % world:
            raise UserError(f"data.batch_size={batch_size} is the global batch, split evenly among the run's {world} "
                            f"processes (trainer.devices x trainer.num_nodes): use a multiple of {world}.")
        self.rows = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
        self.steps_per_epoch = n // (batch_size * batches_per_step)
        if self.steps_per_epoch < 1:
            raise UserError(f"data.batch_size={batch_size} x gan.n_critic={batches_per_step} "
                            f"is more than the dataset's {n} images.")
        self._permutation: tuple[int, torch.Tensor] | None = None

    def _rng(self, key: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + key) % 2**63)

    def draw(self, t: int) -> torch.Tensor:
        """The index batches of iteration `t` (counting from 0), shape (batches_per_step, batch_size)."""
        if self.sampling == "with_replacement":
            return torch.randint(self.n, self.shape, generator=self._rng(t))
        epoch, i = divmod(t, self.steps_per_epoch)
        if self._permutation is None or self._permutation[0] != epoch:
            self._permutation = (epoch, torch.randperm(self.n, generator=self._rng(-1 - epoch)))
        size = self.shape[0] * self.shape[1]
        return self._permutation[1][i * size : (i + 1) * size].view(self.shape)

    def __iter__(self) -> Iterator[torch.Tensor]:
        t = self.start_step()
        while True:
            k = self.chunk_length(t)
            yield torch.stack([self.draw(s)[:, self.rows] for s in range(t, t + k)])
            t += k




DEVICE_SHARE = 0.5  # the images move to the GPU when they take at most this share of its free memory


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a dataset of `nbytes` should live on the training device (a GPU with room for it)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


class ImageDataModule(pl.LightningDataModule):
    """A dataset's training images as uint8 (N, C, H, W) with their labels, and the batches of each
    GAN iteration. Subclasses say where the images come from (`split`) and what the feature
    classifier's cache calls the dataset (`name`).

    Every dataset takes `subset` (train on a fixed choice of that many training images, seeded by
    `subset_seed` and not by the run's seed, so that every seed of a data-efficiency study sees
    the same images; the metrics still score against the whole held-out split) and `mirror` (the
    training set doubled by its horizontal mirror images, stylegan2-ada's `--mirror`: a batch
    draws from 2N rows, the second N flipped as they are gathered)."""

    name: str  # the dataset, in cache keys (gan/metrics/extractor.py)
    pad = 0  # black pixels around each image, for the datasets that take data.pad

    def __init__(self, batch_size: int, image_shape, sampling: str, batches_per_step: int, seed: int,
                 iterations_per_step: int | str, num_classes: int | None, labelled: bool = True,
                 subset: int | None = None, subset_seed: int = 0, mirror: bool = False):
        super().__init__()
        self.subset, self.subset_seed, self.mirror = subset, subset_seed, mirror
        self.batch_size, self.image_shape = batch_size, tuple(image_shape)
        self.sampling, self.batches_per_step = sampling, batches_per_step
        self.seed, self.iterations_per_step = seed, iterations_per_step
        self.num_classes, self.labelled = num_classes, labelled
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._placed = False

    def split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) of the training split, or of the held-out one the metrics
        score against, and their labels (zeros for unlabelled data)."""
        raise NotImplementedError

    @property
    def class_names(self) -> list[str] | None:
        """The classes' names in label order (None: unlabelled), which checkpoints keep for the
        tools that show or export a conditional generator."""
        return None

    def hold(self, images: torch.Tensor) -> torch.Tensor:
        """Where the training images stay between steps (subclasses may copy a mapped file into memory)."""
        return images

    def setup(self, stage: str | None = None) -> None:
        if self.images is not None:
            return
        images, labels = self.split(train=True)
        if tuple(images.shape[1:]) != self.image_shape:
            padded = f" with data.pad={self.pad}" if self.pad else ""
            raise UserError(f"data.image_shape={list(self.image_shape)} but the {self.name} images "
                            f"are {list(images.shape[1:])}{padded}.")
        if self.subset is not None:
            if self.subset > len(images):
                raise UserError(f"data.subset={self.subset} is more than the {len(images)} training images of "
                                f"{self.name}: use at most {len(images)}, or data.subset=null for all of them.")
            keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.subset_seed))[: self.subset]
            keep = keep.sort().values
            images, labels = images[keep], torch.as_tensor(labels)[keep]
        self.images, self.labels = self.hold(images), labels

    @property
    def rows(self) -> int:
        """How many rows a batch draws from: the training images, twice with `mirror`."""
        return len(self.images) * (2 if self.mirror else 1)

    def train_dataloader(self) -> StepBatches:
        trainer = self.trainer
        if trainer is None:  # outside a Trainer: one iteration per step, from the start
            return StepBatches(self.rows, self.batch_size, self.batches_per_step, self.sampling, self.seed)
        self.chunk_cap = iterations_per_step(self.iterations_per_step, trainer.strategy.root_device)
        intervals = event_intervals(trainer)
        return StepBatches(
            self.rows, self.batch_size, self.batches_per_step, self.sampling, self.seed,
            start_step=lambda: trainer.global_step,
            chunk_length=lambda t: chunk_length(t, self.cap_at(t), intervals, trainer.max_steps),
            rank=trainer.global_rank, world=trainer.world_size,
        )

    def cap_at(self, step: int) -> int:
        """The longest chunk that may start after iteration `step`. A function of the step, not a
        value set as training goes, because Lightning fetches the next chunk before the current one
        runs; gan.bench gives its eager blocks one iteration per step through it."""
        return self.chunk_cap

    def transfer_batch_to_device(self, batch: torch.Tensor, device: torch.device, dataloader_idx: int) -> Chunk:
        """Index table -> the chunk of real batches it names. The images move to a GPU once, when
        they fit there; otherwise each iteration's batch is gathered where they are and copied."""
        if self.images.device != device and not self._placed:
            self._placed = True  # decided once
            if fits_on_device(self.images.nbytes, device):
                self.images, self.labels = self.images.to(device), self.labels.to(device)
        return Chunk(batch.to(self.images.device, non_blocking=True), self.images, self.labels, device, self.mirror)
