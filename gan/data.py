"""Datasets held in memory as one tensor; each training step indexes it (`data` group).

torchvision parses (and, online, downloads) the files. After that no per-sample Python
runs: a step's batch is one index tensor, moved to the training device and applied to the
image tensor that lives there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torchvision import datasets

from gan.constraints import Count, NonNegInt, PosInt
from gan.errors import UserError
from gan.iterations import chunk_length, event_intervals, iterations_per_step

SAMPLINGS = ("with_replacement", "epochs")


class Chunk:
    """The real batches of k consecutive GAN iterations, as one `training_step` gets them: the
    index table on the training device and the dataset it indexes. Iterating gathers one
    iteration's (images (n_critic, batch, C, H, W), labels (n_critic, batch)) at a time, so a
    long chunk of large images costs no more memory than one iteration."""

    def __init__(self, index: torch.Tensor, images: torch.Tensor, labels: torch.Tensor):
        self.index, self.images, self.labels = index, images, labels

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.index:
            yield self.images[index], self.labels[index]


class StepBatches:
    """Index tables of shape (k, batches_per_step, batch_size): the real batches of the k GAN
    iterations one training step runs (gan/iterations.py plans k).

    The draw for iteration `t` depends only on (seed, t), so a run resumed from a checkpoint at
    step `t` sees exactly the batches an uninterrupted run would, however its iterations are
    grouped into steps: `with_replacement` draws each batch uniformly with replacement, as the
    Keras example's `np.random.randint` does; `epochs` walks a fresh permutation per pass over
    the data. The iterator never ends (Lightning's epoch is the whole run; `max_steps` ends it)
    and starts at `start_step()`, asked at each `iter()`: the iteration the trainer is at.
    `chunk_length(t)`: how many iterations the step after iteration `t` runs. With several
    processes, `batch_size` is the global batch: each draws all of it and keeps the consecutive
    slice of its `rank` among `world` (gan/distributed.py).
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


def idx_complete(path: Path) -> bool:
    """Whether an idx file (MNIST's format) is as long as its header says."""
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00":
            return False
        dims = f.read(4 * header[3])
    if len(dims) < 4 * header[3]:
        return False
    shape = [int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4)]
    return path.stat().st_size == 4 + len(dims) + math.prod(shape)


class TorchvisionImageDataModule(pl.LightningDataModule):
    """One torchvision dataset class's training split, scaled to [-1, 1] as the Keras example does
    (x / 127.5 - 1), in memory on the training device with its labels."""

    dataset_class: type[datasets.VisionDataset]
    folder: str  # where torchvision expects the files under `root`

    def __init__(
        self,
        root: str,
        batch_size: PosInt = 32,
        image_shape: tuple[PosInt, PosInt, PosInt] = (1, 28, 28),
        sampling: Literal[SAMPLINGS] = "with_replacement",
        batches_per_step: PosInt = 1,
        download: bool = True,
        seed: NonNegInt = 0,
        num_classes: Count | None = None,
        iterations_per_step: PosInt | Literal["auto"] = 1,
    ):
        """`num_classes`: what the config promises the model (conditional networks size their
        label embeddings from it); checked against the dataset's classes. `batches_per_step`
        (gan.n_critic) and `iterations_per_step` come from the run's options (gan/fit.py)."""
        super().__init__()
        self.num_classes = len(self.dataset_class.classes)
        if num_classes is not None and num_classes != self.num_classes:
            raise UserError(f"data.num_classes={num_classes} but {self.dataset_class.__name__} has {self.num_classes} classes.")
        self.root = Path(root).expanduser()
        self.batch_size, self.image_shape = batch_size, tuple(image_shape)
        self.sampling, self.batches_per_step = sampling, batches_per_step
        self.download, self.seed, self.iterations_per_step = download, seed, iterations_per_step
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def _dataset(self, train: bool, download: bool):
        return self.dataset_class(str(self.root), train=train, download=download)

    def prepare_data(self) -> None:
        where = (self.root / self.folder / "raw").resolve()
        files = [where / name.removesuffix(".gz") for name, _ in self.dataset_class.resources]
        try:
            self._dataset(train=True, download=self.download)
            self._dataset(train=False, download=False)  # the metrics read the test split
        except Exception as exc:  # torchvision raises RuntimeError or URLError, depending on what failed
            reason = " ".join(str(exc).split())[:300]
            if all(f.is_file() for f in files):  # there, but unreadable
                bad = next((f for f in files if not idx_complete(f)), where)
                raise UserError(f"{bad} is truncated or corrupt ({reason or type(exc).__name__}). Replace it with the "
                                f"original uncompressed file, or delete it to have it downloaded again.") from None
            files = ", ".join(f.name for f in files)
            how = "could not be downloaded" if self.download else "is missing and data.download=false"
            raise UserError(
                f"{self.dataset_class.__name__} is not under {where} and {how} ({reason}). "
                f"Go online, or put its uncompressed files ({files}) in that folder, "
                f"or set data.root (or the GAN_DATA_DIR environment variable) to a folder that holds {self.folder}/raw/."
            ) from None

    def split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of one split scaled as the Keras example does (x / 127.5 - 1), and their labels."""
        dataset = self._dataset(train=train, download=False)
        return dataset.data.unsqueeze(1).float().div_(127.5).sub_(1.0), dataset.targets

    def setup(self, stage: str | None = None) -> None:
        if self.images is not None:
            return
        images, labels = self.split(train=True)
        if tuple(images.shape[1:]) != self.image_shape:
            raise UserError(f"data.image_shape={list(self.image_shape)} but {self.dataset_class.__name__} images "
                            f"are {list(images.shape[1:])}.")
        self.images, self.labels = images, labels

    def train_dataloader(self) -> StepBatches:
        trainer = self.trainer
        if trainer is None:  # outside a Trainer: one iteration per step, from the start
            return StepBatches(len(self.images), self.batch_size, self.batches_per_step, self.sampling, self.seed)
        self.chunk_cap = iterations_per_step(self.iterations_per_step, trainer.strategy.root_device)
        intervals = event_intervals(trainer)
        return StepBatches(
            len(self.images), self.batch_size, self.batches_per_step, self.sampling, self.seed,
            start_step=lambda: trainer.global_step,
            chunk_length=lambda t: chunk_length(t, self.cap_at(t), intervals, trainer.max_steps),
            rank=trainer.global_rank, world=trainer.world_size,
        )

    def cap_at(self, step: int) -> int:
        """The longest chunk that may start after iteration `step` (gan.bench varies it by block)."""
        return self.chunk_cap

    def transfer_batch_to_device(self, batch: torch.Tensor, device: torch.device, dataloader_idx: int) -> Chunk:
        """Index table -> the chunk of real batches it names, on `device`."""
        if self.images.device != device:
            self.images, self.labels = self.images.to(device), self.labels.to(device)
        return Chunk(batch.to(device, non_blocking=True), self.images, self.labels)


class MNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.MNIST
    folder = "MNIST"


class FashionMNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.FashionMNIST
    folder = "FashionMNIST"
