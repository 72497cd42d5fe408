"""The one way this project writes a file: whole or not at all.

Every file (checkpoints, status.json, cache entries, reports, sample grids, exports) is written
to a hidden temporary file in the *same folder* (`.<name>.<host>.<pid>.tmp`), flushed, fsynced,
and renamed over the target, and the folder is fsynced: a reader, or a run resumed after a kill
or a power cut, sees the old file or the new one, on any file system (a rename within one folder
never becomes a copy, which a temporary file elsewhere would on a cluster's scratch disk). A
write that fails (a full disk, a read-only place) removes its temporary file, leaves the old file
as it was, and is one paragraph naming the path, its file system and what is left there.

Temporary files of a process that died mid-write are removed by the next write into the folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from gan.errors import UserError
from gan.processes import HOST, running

NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # the file system or a quota is full; a file-size limit (ulimit -f)
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


CLEANED: set[Path] = set()  # folders whose stale temporary files this process removed already


def remove_stale_temporaries(folder: Path) -> None:
    """The temporary files that processes of this machine left when they died mid-write (looked
    for once per folder and process: an export writes thousands of files into one)."""
    if folder in CLEANED:
        return
    CLEANED.add(folder)
    for tmp in folder.glob(f".*.{HOST}.*.tmp"):
        pid = tmp.name.removesuffix(".tmp").rsplit(".", 1)[-1]
        if pid.isdigit() and running({"host": HOST, "pid": int(pid)}) is False:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (some file systems refuse to open a folder: nothing to do there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any], durable: bool = True) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`.
    `durable=False` skips the fsyncs (for thousands of small files that the caller syncs at once,
    `os.sync()`): until then the file is whole or absent for any process, not after a power cut."""
    def into(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    write_through(path, into, durable)


def write_through(path: str | Path, make: Callable[[Path], Any], durable: bool = True) -> None:
    """`make(tmp)` writes the file at the path it is given (a temporary one beside `path`, for a
    writer that takes a path: ffmpeg, an exporter), which is then renamed over `path`."""
    path = Path(path)
    tmp = temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        make(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if (cause := os_error(exc)) is not None:
            raise WriteFailed(path, cause) from None
        raise
    if durable:
        fsync_folder(path.parent)


def os_error(exc: BaseException) -> OSError | None:
    """The full disk or unwritable place behind a failed write: torch.save reports a write that
    failed in its file object as a RuntimeError raised while handling the OSError."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in NO_ROOM | NOT_WRITABLE:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def write_text(path: str | Path, text: str, durable: bool = True) -> None:
    write_atomically(path, lambda f: f.write(text.encode()), durable)


def write_json(path: str | Path, value: Any, durable: bool = True) -> None:
    write_text(path, json.dumps(value, indent=1) + "\n", durable)


def save_image(image: Any, path: str | Path, durable: bool = True, **options: Any) -> None:
    """A PIL image, in the format its suffix names (`options`: PIL's, e.g. compress_level, quality)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[Path(path).suffix.lower()]
    write_atomically(path, lambda f: image.save(f, format=fmt, **options), durable)


def save_torch(obj: Any, path: str | Path) -> None:
    import torch

    write_atomically(path, lambda f: torch.save(obj, f))


def replace_folder(tmp: Path, target: Path) -> None:
    """Move a folder filled beside `target` into its place (a damaged `target` is removed first)."""
    for root, _, names in os.walk(tmp):
        for name in names:
            with open(Path(root, name), "rb") as f:
                os.fsync(f.fileno())
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    fsync_folder(target.parent)


def digest(path: Path, chunk: int = 1 << 24) -> str:
    """sha256 of a file, read in pieces (a cache file may be larger than memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def free_space(folder: Path) -> str:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return "unknown free space"
    return f"{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.1f} MiB"


def mount_point(folder: Path) -> Path:
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    while not os.path.ismount(folder):
        folder = folder.parent
    return folder


class WriteFailed(UserError):
    """A file that could not be written, with where and why in one paragraph; what the caller kept
    there may be added (`kept`)."""

    def __init__(self, path: Path, error: OSError, kept: str = ""):
        self.path, self.error = path, error
        why = os.strerror(error.errno) if error.errno else str(error)
        if error.errno in NO_ROOM:
            where = f"the file system at {mount_point(path.parent)} ({free_space(path.parent)})"
            what = "there is no room left on " + where if error.errno != errno.EFBIG else \
                f"the file would exceed this process's file-size limit (ulimit -f) on {where}"
        else:
            what = f"{path.parent} is not writable ({why})"
        previous = f"the previous {path.name} is untouched" if path.exists() else f"no {path.name} was left there"
        super().__init__(f"Could not write {path}: {what}; {previous}{'; ' + kept if kept else ''}. Free some space "
                         f"or point the run somewhere writable (hydra.run.dir=..., GAN_CACHE_DIR=...).")

    def keeping(self, kept: str) -> WriteFailed:
        return WriteFailed(self.path, self.error, kept)
