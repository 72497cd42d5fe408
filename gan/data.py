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

SAMPLINGS = ("with_replacement", "epochs")


class StepBatches:
    """Index batches of shape (batches_per_step, batch_size), one per GAN iteration.

    The draw for iteration `t` depends only on (seed, t), so a run resumed from a
    checkpoint at step `t` sees exactly the batches an uninterrupted run would:
    `with_replacement` draws each batch uniformly with replacement, as the Keras example's
    `np.random.randint` does; `epochs` walks a fresh permutation per epoch.
    `start_step` is asked at every `iter()` (every epoch), so resuming mid-epoch yields the
    rest of that epoch only.
    """

    def __init__(self, n: int, batch_size: int, batches_per_step: int, sampling: str, seed: int, start_step=lambda: 0):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.n, self.shape, self.sampling, self.seed = n, (batches_per_step, batch_size), sampling, seed
        self.start_step = start_step
        self.steps_per_epoch = n // (batch_size * batches_per_step)
        if self.steps_per_epoch < 1:
            raise UserError(f"data.batch_size={batch_size} x gan.n_critic={batches_per_step} "
                            f"is more than the dataset's {n} images.")

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _rng(self, key: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + key) % 2**63)

    def __iter__(self) -> Iterator[torch.Tensor]:
        start = self.start_step()
        epoch, offset = divmod(start, self.steps_per_epoch)
        size = self.shape[0] * self.shape[1]
        if self.sampling == "epochs":
            order = torch.randperm(self.n, generator=self._rng(-1 - epoch))
        for t in range(start, start - offset + self.steps_per_epoch):
            if self.sampling == "epochs":
                i = t % self.steps_per_epoch
                yield order[i * size : (i + 1) * size].view(self.shape)
            else:
                yield torch.randint(self.n, self.shape, generator=self._rng(t))


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
    ):
        """`num_classes`: what the config promises the model (conditional networks size their
        label embeddings from it); checked against the dataset's classes."""
        super().__init__()
        self.num_classes = len(self.dataset_class.classes)
        if num_classes is not None and num_classes != self.num_classes:
            raise UserError(f"data.num_classes={num_classes} but {self.dataset_class.__name__} has {self.num_classes} classes.")
        self.root = Path(root).expanduser()
        self.batch_size, self.image_shape = batch_size, tuple(image_shape)
        self.sampling, self.batches_per_step = sampling, batches_per_step
        self.download, self.seed = download, seed
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
        return StepBatches(
            len(self.images), self.batch_size, self.batches_per_step, self.sampling, self.seed,
            start_step=lambda: self.trainer.global_step if self.trainer is not None else 0,
        )

    def transfer_batch_to_device(self, batch: torch.Tensor, device: torch.device,
                                 dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Index batch -> (images, labels) on `device`."""
        if self.images.device != device:
            self.images, self.labels = self.images.to(device), self.labels.to(device)
        index = batch.to(device, non_blocking=True)
        return self.images[index], self.labels[index]


class MNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.MNIST
    folder = "MNIST"


class FashionMNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.FashionMNIST
    folder = "FashionMNIST"
