"""Write a dataset's images as PNG files, one sub-folder per class: a folder to try `data=folder` on.

    python -m gan.export_images dataset=mnist out=~/mnist_png
    python train.py data=folder data.root=~/mnist_png data.channels=1 data.image_size=28

Files are <out>/<class index>_<class name>/<split>_<index>.png (class folders sort in class
order, so data.labels=folders gives each class its dataset number). `out` must be new or empty:
nothing already there is overwritten, except, with `overwrite=true`, the files of an earlier
export into the same folder (it holds the `.gan-export` mark this command leaves).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image
from tqdm.auto import tqdm

from gan.config.cli import run
from gan.errors import UserError
from gan.files import save_image, write_text

DATASETS = {"mnist": "MNISTDataModule", "fashion_mnist": "FashionMNISTDataModule", "cifar10": "CIFAR10DataModule"}
MARK = ".gan-export"  # left in the folder: an earlier export's files are the only ones overwrite=true replaces


@dataclass
class Args:
    out: str = "???"  # the folder to write (must be empty or new)
    dataset: str = "mnist"  # mnist | fashion_mnist | cifar10 (from data.root)
    root: str = os.environ.get("GAN_DATA_DIR", "data")  # where the dataset lies (downloaded there when online), as data.root
    split: str = "train"  # train | test | both
    n: Optional[int] = None  # at most this many images per split (null: all)
    overwrite: bool = False  # write into a folder an earlier export made (false: only a new or empty folder)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder this command did not make: a link (it leads elsewhere), a file, a folder
    holding anything but an earlier export (that one only with overwrite=true)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"out={out} is {'a link' if out.is_symlink() else 'a file'}: give a new or empty folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARK).is_file():
            raise UserError(f"out={out} is not empty and no export of this command: give a new or empty folder, so "
                            f"nothing already there is overwritten.")
        if not overwrite:
            raise UserError(f"out={out} holds an earlier export: give overwrite=true to write over it, or a new folder.")


def export(args: Args) -> str:
    import gan.data

    if args.dataset not in DATASETS or args.split not in ("train", "test", "both") or (args.n is not None and args.n < 1):
        raise UserError(f"dataset={args.dataset} split={args.split} n={args.n}: dataset is one of {', '.join(DATASETS)}, "
                        f"split train, test or both, n at least 1.")
    out = Path(args.out).expanduser()
    check_out(out, args.overwrite)
    datamodule = getattr(gan.data, DATASETS[args.dataset])(root=args.root)
    datamodule.prepare_data()
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARK, f"written by python -m gan.export_images dataset={args.dataset}\n")
    width = len(str(len(datamodule.classes) - 1))
    folders = [f"{i:0{width}d}_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}" for i, name in enumerate(datamodule.classes)]
    for folder in folders:
        (out / folder).mkdir(parents=True, exist_ok=True)
    count = 0
    for split in ("train", "test") if args.split == "both" else (args.split,):
        images, labels = datamodule.split(train=split == "train")
        images, labels = images[: args.n], labels[: args.n]
        for i, (image, label) in enumerate(tqdm(zip(images.numpy(), labels.tolist()), total=len(images), desc=split)):
            picture = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            # each file whole or absent; made durable all at once, below
            save_image(Image.fromarray(picture), out / folders[label] / f"{split}_{i:05d}.png", False, compress_level=1)
        count += len(images)
    os.sync()  # the images' bytes and names on disk, once for all of them
    return f"{count} images in {out} ({len(folders)} class folders)"


def main() -> None:
    print(run(export, Args, __doc__))


if __name__ == "__main__":
    main()
