"""`data=folder`: a folder of your own images (PNG, JPEG, WebP; flat or in sub-folders).

The first run decodes every image once, in several worker processes with a progress bar, to
`image_size` x `image_size` (scaled and centre-cropped, or scaled and padded, by torchvision's v2
transforms) with `channels` channels, and appends the uint8 pixels to a cache file under
GAN_CACHE_DIR (~/.cache/gan). The cache is keyed by the folder's listing (names, sizes,
modification times) and those settings, so a later run starts in seconds and a changed folder is
decoded again. The entry is whole or absent (decoded beside it, then moved into place), checked
against the sizes and checksums in its meta.json on every open, and decoded again when damaged.
Training reads batches from that file: copied into memory when it fits there (the GPU too, when
it fits there), memory-mapped otherwise, so a set larger than memory trains at page-cache speed
with no per-sample Python.

A share of the images (`holdout`, chosen by a hash of each file's name, so the choice survives
added files) is kept out of training: the metrics score against it and the feature classifier
reports its accuracy on it, as MNIST's test split does. With `labels=folders` each top-level
sub-folder is a class (sorted names: class 0, 1, ...).

A folder may come from anywhere, so its files are treated as hostile: a link that leads out of
`data.root` (or to a folder) is not followed, a name with control characters is not used, an
image whose header claims more than `MAX_PIXELS` is not decoded, and a truncated or malformed
file is skipped; each is counted in the log (data.strict=true: refused, naming it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from gan.cache import cache_dir, describe, locked, verified_folder
from gan.config.constraints import Count, NonNegInt, OpenFraction, PosInt
from gan.config.untrusted import shown
from gan.data.batches import SAMPLINGS, ImageDataModule
from gan.data.memory import available_memory
from gan.errors import UserError
from gan.files import replace_folder, temporary, write_json
from gan.processes import die_with_parent

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FITS = ("crop", "pad")
LABELS = ("none", "folders")
CACHED = ("images.u8", "labels.npy", "files.txt")  # an entry's files, each checked against meta.json's sizes and checksums
FORMAT = 2  # of the cache files and of the decoding below: a change retires old caches
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
MEMORY_SHARE = 0.5  # data.in_memory=auto copies the images into memory when they take at most this share of what is free
MAX_PIXELS = 89_478_485  # PIL's default decompression-bomb limit, held here whatever another library sets PIL's to
ODD_CHARACTERS = {"Cc", "Cs", "Zl", "Zp"}  # Unicode categories no file name used here holds: controls, bad bytes, line breaks


@dataclass
class Listing:
    """The image files of a folder, relative to it: the training ones first, then the held-out ones."""

    files: list[str]
    labels: list[int]
    classes: list[str]
    train: int  # how many of `files` are for training
    fingerprint: str  # of every file's name, size and modification time
    other_files: int  # files that are not images, ignored
    unsafe: list[tuple[str, str]]  # (file, why) of those not read: links out of the folder, names with control characters


def name_hash(relative: str) -> int:
    return int(hashlib.sha1(relative.encode()).hexdigest()[:12], 16)


def why_not_read(path: Path, relative: str, root: Path) -> str:
    """Why a file of the folder is not read ('' when it may be): see the module docstring."""
    if any(unicodedata.category(c) in ODD_CHARACTERS for c in relative):
        return "a name with control characters"
    if path.is_symlink() and (path.is_dir() or not path.resolve().is_relative_to(root)):
        return "a link to a folder (not followed)" if path.is_dir() else "a link out of data.root (not followed)"
    return ""


def scan(root: Path, labels: str, holdout: float, strict: bool = False) -> Listing:
    """The folder's image files (hidden files and folders skipped), their classes and the held-out share."""
    if not root.is_dir():
        raise UserError(f"data.root={root} is not a folder. Point it at a folder of images (PNG, JPEG or WebP, flat "
                        f"or in sub-folders); `python -m gan.export_images` writes MNIST as one.")
    found, other, refused, digest = [], 0, [], hashlib.sha256()
    for folder, subfolders, names in os.walk(root):  # links to folders are listed, never entered
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(set(names) | {d for d in subfolders if Path(folder, d).is_symlink()}):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if why := why_not_read(path, relative, root):
                if strict:
                    raise UserError(f"data.strict=true: {shown(str(path), 200)} in data.root is {why}. Remove it, or set "
                                    f"data.strict=false to skip such files with a count in the log.")
                refused.append((shown(relative, 200), why))
                continue
            if path.suffix.lower() not in SUFFIXES:
                other += 1
                continue
            try:
                stat = path.stat()
            except OSError:  # a dangling link inside the folder: nothing to read
                continue
            found.append(relative)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if not found:
        raise UserError(f"data.root={root} holds no images: no PNG, JPEG or WebP file in it or its sub-folders"
                        + (f" (it holds {other} other files)." if other else " (it is empty)."))
    classes: list[str] = []
    if labels == "folders":
        loose = [f for f in found if "/" not in f]
        if loose:
            raise UserError(f"data.labels=folders takes each image's class from its sub-folder of data.root, and {len(loose)} "
                            f"images lie directly in {root} (first: {loose[0]}): move them into a class folder, or use "
                            f"data.labels=none.")
        classes = sorted({f.split("/", 1)[0] for f in found})
        if len(classes) < 2:
            raise UserError(f"data.labels=folders found one class ({classes[0]}/) in data.root={root}: class labels need "
                            f"at least 2 sub-folders of images, one per class. Use data.labels=none for an unlabelled set.")
    count = min(max(1, round(holdout * len(found))), len(found) - 1)  # at least one of each
    held = set(sorted(found, key=name_hash)[:count])
    ordered = sorted(f for f in found if f not in held) + sorted(held)
    index = {name: i for i, name in enumerate(classes)}
    return Listing(ordered, [index[f.split("/", 1)[0]] if classes else 0 for f in ordered], classes,
                   len(found) - len(held), digest.hexdigest(), other, refused)


def colour_channels(image: Image.Image) -> int:
    return 1 if image.mode in GREY_MODES else 3


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """`image` as 8-bit grey (L) or RGB; transparency composited onto black, 16-bit grey scaled to 8 bits."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


class Decoder(Dataset):
    """Item i: (i, uint8 array (C, size, size) or None, what happened: '' | 'unreadable' | 'converted', detail)."""

    def __init__(self, root: Path, files: list[str], size: int, channels: int, fit: str):
        self.root, self.files, self.size, self.channels = root, files, size, channels
        scale = v2.Resize(size, antialias=True) if fit == "crop" else v2.Resize(None, max_size=size, antialias=True)
        self.transform = v2.Compose([scale, v2.CenterCrop(size)])  # CenterCrop pads (black) a side shorter than `size`

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str, str]:
        try:
            with warnings.catch_warnings():  # PIL warns of a large image and decodes it; the limit below skips it
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(self.root / self.files[i])
            with image:
                if image.width * image.height > MAX_PIXELS:
                    raise ValueError(f"its header claims {image.width}x{image.height} pixels, more than the {MAX_PIXELS} "
                                     f"decoded (a decompression bomb?)")
                natural = colour_channels(image)
                image.draft("L" if self.channels == 1 else "RGB", (self.size, self.size))  # JPEG: decode no larger than needed
                upright = ImageOps.exif_transpose(image)  # a phone photo's orientation tag
                pixels = v2.functional.pil_to_tensor(to_mode(upright, self.channels))
        except Exception as exc:  # PIL raises many kinds for a bad file
            return i, None, "unreadable", f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        converted = natural != self.channels
        detail = f"{'grey' if natural == 1 else 'colour'} ({image.mode})" if converted else ""
        # numpy, not a tensor: a worker sends it through its pipe, where a tensor would cost a shared-memory file each
        return i, self.transform(pixels).numpy(), "converted" if converted else "", detail


def as_list(batch: list) -> list:
    return batch


def worker_start(parent: int, worker: int) -> None:
    """A decode worker dies with the run that started it (a killed run left one decoding for ever)."""
    die_with_parent(parent)


def decode(root: Path, listing: Listing, shape: tuple[int, int, int], fit: str, workers: int, strict: bool,
           into: Path) -> dict:
    """Decode every file of `listing` into `into`/images.u8 (uint8 rows in listing order, unreadable
    files left out) and labels.npy; return what happened, for meta.json."""
    channels, size, _ = shape
    loader = DataLoader(Decoder(root, listing.files, size, channels, fit), batch_size=64, num_workers=workers,
                        collate_fn=as_list, worker_init_fn=functools.partial(worker_start, os.getpid()))
    kept, kept_labels, train, skipped, converted = [], [], 0, [], Counter()
    start = time.perf_counter()
    with open(into / "images.u8", "wb") as out, tqdm(total=len(listing.files), unit="img", desc=f"decoding {root}") as bar:
        for batch in loader:
            for i, pixels, what, detail in batch:
                path = root / listing.files[i]
                if what == "unreadable":
                    if strict:
                        raise UserError(f"data.strict=true: {path} is not a readable image ({detail}). Remove or replace "
                                        f"it, or set data.strict=false to skip such files with a count in the log.")
                    skipped.append([listing.files[i], detail])
                    continue
                if what == "converted":
                    if strict:
                        raise UserError(f"data.strict=true: {path} is {detail} but data.channels={channels}. Convert it, "
                                        f"or set data.strict=false to convert such files with a count in the log.")
                    converted[detail.split(" ")[0]] += 1
                out.write(pixels.tobytes())
                kept.append(listing.files[i])
                kept_labels.append(listing.labels[i])
                train += i < listing.train
            bar.update(len(batch))
    if train == 0:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UserError(f"data.root={root}: none of its {listing.train} training images could be read{first}.")
    np.save(into / "labels.npy", np.asarray(kept_labels, dtype=np.int64))
    (into / "files.txt").write_text("".join(f"{name}\n" for name in kept))  # which file each row is
    return {"format": FORMAT, "root": str(root), "shape": list(shape), "count": len(kept_labels), "train": train,
            "classes": listing.classes, "skipped": skipped, "converted": dict(converted),
            "decode_seconds": round(time.perf_counter() - start, 3), "workers": workers}


class FolderDataModule(ImageDataModule):
    """Your own images: see the module docstring, and conf/data/folder.yaml for each key."""

    def __init__(
        self,
        root: str | None = None,
        image_size: PosInt = 64,
        channels: Literal[1, 3] = 3,
        labels: Literal[LABELS] = "none",
        fit: Literal[FITS] = "crop",
        holdout: OpenFraction = 0.1,
        strict: bool = False,
        in_memory: bool | Literal["auto"] = "auto",
        workers: NonNegInt | Literal["auto"] = "auto",
        num_classes: Count | None = None,
        image_shape: tuple[PosInt, PosInt, PosInt] | None = None,
        batch_size: PosInt = 32,
        sampling: Literal[SAMPLINGS] = "with_replacement",
        batches_per_step: PosInt = 1,
        seed: NonNegInt = 0,
        iterations_per_step: PosInt | Literal["auto"] = 1,
        subset: PosInt | None = None,
        subset_seed: NonNegInt = 0,
        mirror: bool = False,
    ):
        """`image_shape` is (channels, image_size, image_size), which the models read; `num_classes`
        (with labels=folders) is checked against the sub-folders when given."""
        shape = (channels, image_size, image_size)
        if root is None:
            raise UserError("data=folder needs data.root=<a folder of images> (PNG, JPEG or WebP, flat or in sub-folders).")
        if image_shape is not None and tuple(image_shape) != shape:
            raise UserError(f"data.image_shape={list(image_shape)} but data.channels={channels} and data.image_size="
                            f"{image_size} make {list(shape)}: set those two, not image_shape.")
        super().__init__(batch_size, shape, sampling, batches_per_step, seed, iterations_per_step, None,
                         labelled=labels == "folders", subset=subset, subset_seed=subset_seed, mirror=mirror)
        self.root = Path(root).expanduser().resolve()
        self.labels_from, self.fit, self.holdout, self.strict = labels, fit, holdout, strict
        self.in_memory, self.workers, self.promised_classes = in_memory, workers, num_classes
        self.cache: Path | None = None
        self.meta: dict | None = None

    @property
    def class_names(self) -> list[str] | None:
        return list(self.meta["classes"]) if self.labelled and self.meta and self.meta.get("classes") else None

    @property
    def name(self) -> str:
        return f"folder-{self.cache.name[:16]}" if self.cache else f"folder {self.root}"

    def prepare_data(self) -> None:
        """List the folder and decode it into the cache unless it is there already."""
        if self.meta is not None:
            return
        listing = scan(self.root, self.labels_from, self.holdout, self.strict)
        key = hashlib.sha256(repr((listing.fingerprint, self.image_shape, self.fit, self.labels_from, self.holdout,
                                   FORMAT)).encode()).hexdigest()[:32]
        self.cache = cache_dir() / "images" / key
        what = f"the decoded images of {self.root}"
        meta = verified_folder(self.cache, CACHED, what, quiet=True)  # read without a lock: a read-only cache works
        if meta is None:
            with locked(self.cache, what):  # processes of one run, or two runs: one decodes
                meta = verified_folder(self.cache, CACHED, what) or self.decode_into_cache(listing)
        self.meta = meta
        self.check_meta(listing)

    def decode_into_cache(self, listing: Listing) -> dict:
        """Decode into a folder beside the entry, then move it into place: the entry is whole or absent."""
        workers = min(os.cpu_count() or 1, 8) if self.workers == "auto" else self.workers
        for stale in self.cache.parent.glob(f".{self.cache.name}.*.tmp"):  # a decode killed earlier; the lock is ours
            shutil.rmtree(stale, ignore_errors=True)
        tmp = temporary(self.cache)
        tmp.mkdir(parents=True)
        try:
            meta = decode(self.root, listing, self.image_shape, self.fit, workers if len(listing.files) > 256 else 0,
                          self.strict, tmp)
            meta["files"] = describe({name: tmp / name for name in CACHED})
            write_json(tmp / "meta.json", meta)
            replace_folder(tmp, self.cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return meta

    def check_meta(self, listing: Listing) -> None:
        meta = self.meta
        if self.strict and (meta["skipped"] or meta["converted"]):
            first = meta["skipped"][0] if meta["skipped"] else None
            what = f"{first[0]} is not a readable image ({first[1]})" if first else f"{sum(meta['converted'].values())} " \
                   f"images are not in the mode data.channels={self.image_shape[0]} asks for"
            raise UserError(f"data.strict=true: in data.root={self.root}, {what} (found when the cache was made without "
                            f"data.strict). Fix the files, or set data.strict=false.")
        self.num_classes = len(meta["classes"]) or None
        if self.promised_classes is not None and self.promised_classes != self.num_classes:
            raise UserError(f"data.num_classes={self.promised_classes} but data.root={self.root} has "
                            f"{self.num_classes or 'no'} classes" + (" (data.labels=none)." if not self.labelled else
                                                                     f" (sub-folders {', '.join(meta['classes'][:5])}...)."))
        if meta["train"] < self.batch_size:
            raise UserError(f"data.batch_size={self.batch_size} is more than the {meta['train']} training images of "
                            f"data.root={self.root}.")
        note = [f"{meta['count']} images of {self.root} ({meta['train']} for training, {meta['count'] - meta['train']} "
                f"held out for the metrics)" + (f", {self.num_classes} classes" if self.num_classes else "")
                + f", {'x'.join(map(str, self.image_shape))}, cached in {self.cache}"]
        if listing.other_files:
            note.append(f"{listing.other_files} files that are not PNG, JPEG or WebP ignored")
        for why in dict.fromkeys(why for _, why in listing.unsafe):
            files = [name for name, reason in listing.unsafe if reason == why]
            note.append(f"{len(files)} files not read, each {why} (first: {files[0]})")
        if meta["skipped"]:
            (first, why), *_ = meta["skipped"]
            note.append(f"{len(meta['skipped'])} unreadable files skipped (first: {first}: {why})")
        for kind, count in meta["converted"].items():
            note.append(f"{count} {kind} images converted to {'grey' if self.image_shape[0] == 1 else 'colour'}")
        log.info("; ".join(note))

    def mapped(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare_data()
        array = np.memmap(self.cache / "images.u8", dtype=np.uint8, mode="r", shape=(self.meta["count"], *self.image_shape))
        with warnings.catch_warnings():  # read-only by design: nothing writes to the cache
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(array)
        return images, torch.from_numpy(np.load(self.cache / "labels.npy", allow_pickle=False))

    def files(self) -> list[str]:
        """The file of each cached image (training ones first), relative to data.root."""
        self.prepare_data()
        return (self.cache / "files.txt").read_text().splitlines()

    def split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.mapped()
        part = slice(None, self.meta["train"]) if train else slice(self.meta["train"], None)
        return images[part], labels[part]

    def hold(self, images: torch.Tensor) -> torch.Tensor:
        """A copy in memory when it fits there (data.in_memory), else the memory-mapped cache itself."""
        size = f"{images.nbytes / 2**30:.2f} GiB"
        if self.in_memory == "auto":
            free = available_memory()
            processes = self.trainer.num_devices if self.trainer is not None else 1  # each process of a node copies
            if free is not None and images.nbytes * processes > MEMORY_SHARE * free:
                log.info("Training images: %s, read from the memory-mapped cache (more than half of the %.2f GiB this "
                         "process may still take; data.in_memory=true copies them anyway)", size, free / 2**30)
                return images
        elif not self.in_memory:
            return images
        try:
            return images.clone()
        except RuntimeError as exc:
            if "alloc" not in str(exc):
                raise
            if self.in_memory == "auto":
                log.info("Training images: %s, read from the memory-mapped cache (no room to copy them)", size)
                return images
            raise UserError(f"data.in_memory=true: the {size} of training images do not fit in this process's "
                            f"memory. Use data.in_memory=false (read from the memory-mapped cache) or auto.") from None
