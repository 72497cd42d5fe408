"""Datasets (`data` group): MNIST, Fashion-MNIST and CIFAR-10 from torchvision's folders, and any
folder of images (`data=folder`). Each holds its images as uint8 and draws each GAN iteration's
real batch from (seed, iteration) (gan/data/batches.py)."""

from gan.data.batches import Chunk, ImageDataModule, StepBatches, to_unit
from gan.data.folder import FolderDataModule
from gan.data.torchvision_sets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule, idx_complete

__all__ = ["CIFAR10DataModule", "Chunk", "FashionMNISTDataModule", "FolderDataModule", "ImageDataModule",
           "MNISTDataModule", "StepBatches", "idx_complete", "to_unit"]
