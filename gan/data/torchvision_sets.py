"""The datasets torchvision knows (MNIST, Fashion-MNIST, CIFAR-10), from their standard folders
under `data.root`, downloaded there by torchvision when missing and online.

CIFAR-10's "python version" is a set of pickle files. torchvision unpickles them, which runs
whatever code a crafted file names; this project reads them with an unpickler that only builds
numpy arrays, so a CIFAR-10 folder from anywhere is as safe as a checkpoint (weights_only).
"""

from __future__ import annotations

import codecs
import math
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision import datasets

from gan.config.constraints import Count, NonNegInt, PosInt
from gan.data.batches import SAMPLINGS, ImageDataModule
from gan.errors import UserError


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


class TorchvisionImageDataModule(ImageDataModule):
    """One torchvision dataset's training split, held in memory (on the training device when it
    fits there) with its labels; the metrics score against its test split."""

    dataset_class: type[datasets.VisionDataset]
    folder: str  # where the files lie under `root`
    files: tuple[str, ...]  # their names there
    classes: tuple[str, ...]
    corrupt_hint = "Replace it with the original uncompressed file, or delete it to have it downloaded again."

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
        subset: PosInt | None = None,
        subset_seed: NonNegInt = 0,
        mirror: bool = False,
        pad: NonNegInt = 0,
    ):
        """`num_classes`: what the config promises the model (conditional networks size their
        label embeddings from it); checked against the dataset's classes. `batches_per_step`
        (gan.n_critic) and `iterations_per_step` come from the run's options (gan/training/fit.py).
        `pad`: black pixels added on every side of every image, training and held-out alike (2:
        MNIST's 28 px to the 32 px the residual networks take); `image_shape` is the padded shape."""
        classes = len(self.classes)
        if num_classes is not None and num_classes != classes:
            raise UserError(f"data.num_classes={num_classes} but {self.name} has {classes} classes.")
        super().__init__(batch_size, image_shape, sampling, batches_per_step, seed, iterations_per_step, classes,
                         subset=subset, subset_seed=subset_seed, mirror=mirror)
        self.root, self.download, self.pad = Path(root).expanduser(), download, pad

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.classes]

    @property
    def name(self) -> str:
        return self.dataset_class.__name__

    def where(self) -> Path:
        return (self.root / self.folder).resolve()

    def fetch(self) -> None:
        """Let torchvision download what is missing (it does nothing when the files are there)."""
        self.dataset_class(str(self.root), train=True, download=True)

    def read(self, train: bool) -> tuple[np.ndarray | torch.Tensor, list[int] | torch.Tensor]:
        """uint8 images (N, C, H, W) and labels of one split, from the files."""
        dataset = self.dataset_class(str(self.root), train=train, download=False)
        return dataset.data.unsqueeze(1), dataset.targets

    def prepare_data(self) -> None:
        where = self.where()
        paths = [where / name for name in self.files]
        try:
            if self.download and not all(p.is_file() for p in paths):
                self.fetch()
            for train in (True, False):  # the metrics read the test split
                self.read(train)
        except Exception as exc:  # torchvision raises RuntimeError or URLError, depending on what failed
            reason = " ".join(str(exc).split())[:300]
            if all(p.is_file() for p in paths):  # there, but unreadable
                bad = next((p for p in paths if not self.complete(p)), where)
                raise UserError(f"{bad} is truncated or corrupt ({reason or type(exc).__name__}). {self.corrupt_hint}") from None
            how = "could not be downloaded" if self.download else "is missing and data.download=false"
            raise UserError(
                f"{self.name} is not under {where} and {how} ({reason}). Go online, or put its files "
                f"({', '.join(self.files)}) in that folder, or set data.root (or the GAN_DATA_DIR environment "
                f"variable) to a folder that holds {self.folder}/."
            ) from None

    def complete(self, path: Path) -> bool:
        return idx_complete(path)

    def split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.read(train)
        images = torch.nn.functional.pad(torch.as_tensor(images), [self.pad] * 4)  # uint8 0: black, -1 once scaled
        return images, torch.as_tensor(labels, dtype=torch.long)


class MNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.MNIST
    folder = "MNIST/raw"
    classes = tuple(datasets.MNIST.classes)
    files = tuple(name.removesuffix(".gz") for name, _ in datasets.MNIST.resources)


class FashionMNISTDataModule(TorchvisionImageDataModule):
    dataset_class = datasets.FashionMNIST
    folder = "FashionMNIST/raw"
    classes = tuple(datasets.FashionMNIST.classes)
    files = tuple(name.removesuffix(".gz") for name, _ in datasets.FashionMNIST.resources)


class ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, strings and numbers, and refuses every other
    class a file names: a crafted file cannot run code."""

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): codecs.encode}  # bytes, as Python 3 writes them in protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[module, name]
        raise pickle.UnpicklingError(f"it names {module}.{name}, and a CIFAR-10 batch holds only numpy arrays and lists")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """One file of CIFAR-10's python version: (N, 3, 32, 32) uint8 images and their labels."""
    with open(path, "rb") as f:
        entry = ArraysOnly(f, encoding="latin1").load()
    data, labels = entry["data"], entry["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and len(labels) == len(data)):
        raise ValueError("not a batch of 3x32x32 uint8 images with one label each")
    return data.reshape(-1, 3, 32, 32), list(labels)


class CIFAR10DataModule(TorchvisionImageDataModule):
    """CIFAR-10's python version (cifar-10-batches-py/: data_batch_1..5, test_batch), as
    torchvision downloads and unpacks it."""

    dataset_class = datasets.CIFAR10
    folder = datasets.CIFAR10.base_folder
    files = tuple(name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    corrupt_hint = ("Replace the folder with a fresh copy of cifar-10-python.tar.gz unpacked, "
                    "or delete it to have it downloaded again.")

    def read(self, train: bool) -> tuple[np.ndarray, list[int]]:
        names = [name for name, _ in (self.dataset_class.train_list if train else self.dataset_class.test_list)]
        parts = [read_cifar_batch(self.where() / name) for name in names]
        return np.concatenate([p[0] for p in parts]), [y for p in parts for y in p[1]]

    def complete(self, path: Path) -> bool:
        try:
            read_cifar_batch(path)
            return True
        except Exception:
            return False
