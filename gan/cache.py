"""The project's cache folder (GAN_CACHE_DIR, else ~/.cache/gan): decoded image folders, feature
classifiers, reference features. Written atomically, filled by one process at a time."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import torch


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_CACHE_DIR", Path.home() / ".cache" / "gan")).expanduser()


def save_atomically(obj, path: Path) -> None:
    """torch.save to `path` through a temporary file of this process, then a rename: a half-written
    file is never read from the cache, and two runs filling it at once do not mix their bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


@contextmanager
def locked(path: Path):
    """An exclusive lock on `path`'s `.lock` file (released when this process ends, whatever way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
