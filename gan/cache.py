"""The project's cache folder (GAN_CACHE_DIR, else ~/.cache/gan): decoded image folders, feature
classifiers, reference features.

An entry is whole or absent: written through gan/files.py, with its size and checksum in a
manifest beside it, and verified on every open. A damaged entry (truncated, overwritten, an
older version's without a manifest) is rebuilt, with one log line naming it, never used and
never fatal. Readers take no lock, so a read-only cache that holds what a run needs just works;
one process at a time builds a missing entry, under a lock that dies with its holder."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gan.errors import UserError
from gan.files import digest, save_torch, write_json
from gan.processes import identity, running

log = logging.getLogger(__name__)
WAIT_NOTE_EVERY = 60.0  # seconds between the lines a run waiting for a lock prints


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_CACHE_DIR", Path.home() / ".cache" / "gan")).expanduser()


def unusable(path: Path, exc: OSError, missing: str) -> UserError:
    return UserError(f"The cache folder cannot be written ({path}: {os.strerror(exc.errno) if exc.errno else exc}), "
                     f"and it holds no usable copy of {missing}. Point GAN_CACHE_DIR at a writable folder (it is "
                     f"{os.environ.get('GAN_CACHE_DIR', 'unset: ~/.cache/gan')}), or fill this cache once where it is writable.")


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def describe(files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {name: {"size": p.stat().st_size, "sha256": digest(p)} for name, p in files.items()}


def damage(files: dict[str, Path], manifest: Any) -> str:
    """What is wrong with `files` against their manifest ('' when nothing)."""
    if not isinstance(manifest, dict):
        return "no manifest (written by an older version, or cut short)"
    for name, p in files.items():
        want = manifest.get(name)
        if not isinstance(want, dict):
            return f"{name} is not in its manifest"
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != want.get("size"):
            return f"{name} holds {p.stat().st_size} bytes, {want.get('size')} were written"
        if digest(p) != want.get("sha256"):
            return f"{name} does not match its checksum"
    return ""


def read_manifest(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def discard(entry: Path, why: str, what: str) -> None:
    log.warning("Cache entry %s (%s) is damaged: %s; building it again.", entry, what, why)


def load_file(path: Path, what: str, quiet: bool = False) -> Any | None:
    """A cached torch file, verified against its manifest; None when absent or damaged."""
    import torch

    if not path.exists():
        return None
    why = damage({path.name: path}, read_manifest(manifest_of(path)))
    if not why:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # whole but not what this version writes
            why = f"unreadable ({type(exc).__name__})"
    if not quiet:
        discard(path, why, what)
    return None


def cached(path: Path, build: Callable[[], Any], what: str) -> Any:
    """The torch object cached at `path`, built (by one process at a time) and stored when it is
    absent or damaged. `what` names it in the log and in errors."""
    if (found := load_file(path, what, quiet=True)) is not None:
        return found
    with locked(path, what):  # absent, damaged, or being built by another process: said once it is ours
        if (found := load_file(path, what)) is not None:  # built while this run waited
            return found
        value = build()
        store(value, path)
        return value


def store(value: Any, path: Path) -> None:
    """`value` into the cache at `path`. The manifest is the entry's commit record: removed before
    the file is written and written after it, so a manifest always describes the file beside it,
    and a file without one (a writer killed in between) is not used."""
    manifest_of(path).unlink(missing_ok=True)
    save_torch(value, path)
    write_json(manifest_of(path), describe({path.name: path}))


def verified_folder(entry: Path, names: tuple[str, ...], what: str, quiet: bool = False) -> dict | None:
    """The meta.json of a cached folder whose `names` all match the manifest in it; None when the
    folder is absent or damaged."""
    if not entry.exists():
        return None
    meta = read_manifest(entry / "meta.json")
    why = damage({n: entry / n for n in names}, meta.get("files") if isinstance(meta, dict) else None)
    if not why:
        return meta
    if not quiet:
        discard(entry, why, what)
    return None


def holder(fd: int) -> dict:
    """Who the lock file names. Read through the lock's own descriptor: a POSIX lock is dropped when
    its process closes *any* descriptor of the file, so the file is never opened a second time."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def locked(path: Path, what: str = "a cache entry") -> Iterator[None]:
    """An exclusive lock on `path`'s `.lock` file while this process builds `path`.

    A POSIX record lock: the kernel drops it when its process ends, however it ends, and a
    child process (a decode worker) never holds it. The file names its holder, so a run that
    waits says for whom and since when, and one that takes over from a process that died
    while holding it says so. (This process must not open the lock file otherwise while it holds
    it: closing any descriptor of a file drops a POSIX lock on it.)"""
    lock = path.with_suffix(".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise unusable(lock.parent, exc, what) from None
    try:
        wait(fd, lock)
        left = holder(fd)
        if left.get("pid") not in (None, os.getpid()) and running(left) is not True:
            log.warning("Took over the lock %s from process %s on %s, which ended while holding it (since %s).", lock,
                        left.get("pid"), left.get("host"), left.get("since", "?"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**identity(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released in order: nothing to take over
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def wait(fd: int, lock: Path) -> None:
    """Take the lock, saying what this run waits for while another process holds it."""
    waited = time.monotonic()
    note = 0.0
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() - waited >= note:
            who = holder(fd)
            log.info("Waiting for %s, held by process %s on %s since %s (waited %.0f s).", lock, who.get("pid", "?"),
                     who.get("host", "?"), who.get("since", "?"), time.monotonic() - waited)
            note += WAIT_NOTE_EVERY
        time.sleep(0.2)
