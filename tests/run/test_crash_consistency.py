"""Faults injected into real processes and real files: kills at awkward moments, full disks,
truncated and same-size garbage files, read-only caches, tiny data, huge models. Every file is
whole or absent afterwards, every cache heals, no process outlives its parent, and each refusal
is one paragraph."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan.cache import cached, locked, manifest_of
from gan.data import FolderDataModule
from gan.errors import UserError
from gan.files import WriteFailed, write_atomically
from gan.metrics.extractor import Recipe, load_or_train
from gan.run.checkpoints.files import readable_checkpoints, resolve_checkpoint
from gan.run.checkpoints.saving import WholeCheckpoints
from tests.helpers import DATA_ROOT, ROOT, children, generator_weights, killed_with_survivors

TRAIN = [sys.executable, str(ROOT / "train.py")]


def env(cache: Path, **more: str) -> dict:
    found = {**os.environ, "GAN_DATA_DIR": DATA_ROOT, "GAN_CACHE_DIR": str(cache), **more}
    found.pop("HYDRA_FULL_ERROR", None)
    return found


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def mounted(target: Path, *options: str):
    """A file system mounted for the test (tmpfs, or a read-only bind); skipped where mounting is not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def photo_folder(root: Path, n: int, side: int = 160) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8))
        small.resize((side, side), Image.BICUBIC).save(root / f"{i:05d}.jpg", quality=90)
    return root


# -- one way to write a file --------------------------------------------------------------------------------------


def test_a_write_that_fails_half_way_leaves_the_previous_file_byte_identical_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    WholeCheckpoints().save_checkpoint({"global_step": 150, "state_dict": {"w": torch.ones(1000)}}, path)
    before = sha(path)

    def half_then_full(f):
        f.write(b"x" * 5000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteFailed) as failed:
        write_atomically(path, half_then_full)
    assert sha(path) == before and sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    message = str(failed.value)
    assert "no room left" in message and str(path) in message and "the previous last.ckpt is untouched" in message

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: half_then_full(f))  # the checkpoint writer's own torch.save
    with pytest.raises(WriteFailed) as failed:
        WholeCheckpoints().save_checkpoint({"global_step": 200, "state_dict": {}}, path.with_name("step_000200.ckpt"))
    assert "the run keeps last.ckpt (iteration 150)" in str(failed.value)
    assert sha(path) == before and sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_temporary_files_of_a_dead_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from gan.files import HOST, temporary

    left = temporary(tmp_path / "status.json").with_name(f".status.json.{HOST}.{int(dead.stdout)}.tmp")
    left.write_text("{half")
    mine = temporary(tmp_path / "other.json")  # this process's, mid-write: left alone
    mine.write_text("{")
    write_atomically(tmp_path / "status.json", lambda f: f.write(b"{}"))
    assert not left.exists() and mine.exists() and (tmp_path / "status.json").read_text() == "{}"


@pytest.mark.slow
def test_a_full_disk_is_one_paragraph_naming_it_and_keeps_the_last_whole_checkpoint(tmp_path):
    """The run folder on a small tmpfs (the cluster layout: another file system than /tmp): the
    second step checkpoint cannot be written; the run ends `failed` with that error, in one
    paragraph, last.ckpt of iteration 10 whole, nothing partial, and a resume takes it."""
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=60m", "tmpfs") as disk:
        run = disk / "run"
        done = subprocess.run([*TRAIN, "trainer=cpu", "eval_every=0", "trainer.max_steps=40", "sample_every=10",
                               "callbacks.checkpoint.every_n_train_steps=10", "callbacks.last.every_n_train_steps=10",
                               "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run}"],
                              cwd=tmp_path, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        error = [line for line in done.stderr.splitlines() if "Could not write" in line]
        assert error and "no room left on the file system at" in error[0] and "the run keeps" in error[0], done.stderr[-3000:]
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "failed" and "Could not write" in status["error"] and "on_exception" not in status["error"]
        names = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert not [n for n in names if n.endswith(".tmp")]
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
        assert resolve_checkpoint(str(run)) in {str(run / "checkpoints" / n) for n in ("last.ckpt", "step_000010.ckpt")}


# -- readers that verify ------------------------------------------------------------------------------------------


def fake_checkpoint(path: Path, step: int) -> None:
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(10_000)}}, path)


def test_resume_from_a_folder_takes_the_newest_checkpoint_that_reads_and_says_which_it_skipped(tmp_path, caplog):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    fake_checkpoint(folder / "last.ckpt", 150)
    fake_checkpoint(folder / "step_000100.ckpt", 100)
    fake_checkpoint(folder / "step_000200.ckpt", 200)
    whole = (folder / "step_000200.ckpt").read_bytes()
    (folder / "step_000200.ckpt").write_bytes(whole[: len(whole) * 14 // 24])  # the full disk's 14 of 24 MB
    (folder / "on_exception.ckpt").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint(str(tmp_path / "run")) == str(folder / "last.ckpt")
    assert "step_000200.ckpt: it does not read as a checkpoint" in caplog.text
    assert [(p.name, s) for p, s in readable_checkpoints(folder)] == [("last.ckpt", 150), ("step_000100.ckpt", 100)]


def tiny_split(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 4


@pytest.mark.parametrize("damage", ["truncated", "garbage of the same size", "no manifest"])
def test_a_damaged_classifier_cache_is_trained_again_with_a_line_naming_it(damage, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path))
    recipe = Recipe(epochs=1, min_steps=1, batch_size=8)
    _, first = load_or_train("Tiny", tiny_split(), tiny_split(), 4, recipe)
    [path] = tmp_path.glob("Tiny-*.pt")
    size = path.stat().st_size
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100_000 if size > 100_000 else size // 2])
    elif damage == "no manifest":
        manifest_of(path).unlink()
    else:
        path.write_bytes(os.urandom(size))
    with caplog.at_level(logging.INFO):
        _, again = load_or_train("Tiny", tiny_split(), tiny_split(), 4, recipe)
    assert again == first  # trained again, to the same network
    assert f"Cache entry {path}" in caplog.text and "is damaged" in caplog.text and "Training the Tiny" in caplog.text
    with caplog.at_level(logging.INFO):
        caplog.clear()
        load_or_train("Tiny", tiny_split(), tiny_split(), 4, recipe)
    assert "Training the Tiny" not in caplog.text and "damaged" not in caplog.text  # whole now: read as it is


def test_damaged_reference_features_are_computed_again(tmp_path, caplog):
    path, calls = tmp_path / "features.pt", []

    def compute() -> dict:
        calls.append(1)
        return {"conv": torch.arange(100_000.0)}

    cached(path, compute, "the reference features")
    path.write_bytes(path.read_bytes()[:-1000])
    with caplog.at_level(logging.WARNING):
        found = cached(path, compute, "the reference features")
    assert len(calls) == 2 and torch.equal(found["conv"], torch.arange(100_000.0))
    assert "the reference features" in caplog.text and "bytes" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "garbage of the same size"])
def test_a_damaged_folder_cache_is_decoded_again_not_trained_on(damage, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    root = photo_folder(tmp_path / "photos", 40, side=40)
    first = FolderDataModule(root=str(root), image_size=16, batch_size=4)
    first.prepare_data()
    pixels = first.mapped()[0].clone()
    u8 = first.cache / "images.u8"
    u8.write_bytes(u8.read_bytes()[: u8.stat().st_size // 3] if damage == "truncated" else os.urandom(u8.stat().st_size))
    again = FolderDataModule(root=str(root), image_size=16, batch_size=4)
    with caplog.at_level(logging.WARNING):
        again.prepare_data()
    assert torch.equal(again.mapped()[0], pixels)
    assert f"Cache entry {first.cache}" in caplog.text and "images.u8" in caplog.text


def test_a_read_only_cache_that_holds_the_entry_is_read_and_one_that_lacks_it_is_one_paragraph(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GAN_CACHE_DIR", str(cache))
    root = photo_folder(tmp_path / "photos", 20, side=40)
    built = FolderDataModule(root=str(root), image_size=16, batch_size=4)
    built.prepare_data()
    for lock in cache.rglob("*.lock"):
        lock.unlink()  # a cache copied to a read-only share holds no lock files
    with mounted(tmp_path / "ro", "--bind", str(cache)) as ro:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        monkeypatch.setenv("GAN_CACHE_DIR", str(ro))
        used = FolderDataModule(root=str(root), image_size=16, batch_size=4)
        used.prepare_data()
        assert torch.equal(used.mapped()[0], built.mapped()[0])
        with pytest.raises(UserError) as refused:
            FolderDataModule(root=str(root), image_size=24, batch_size=4).prepare_data()  # another size: not in the cache
        message = str(refused.value)
        assert "cannot be written" in message and "Read-only file system" in message and "GAN_CACHE_DIR" in message


@pytest.mark.parametrize("where", ["/proc/nosuch/x", "a file"])
def test_an_unusable_cache_folder_is_one_paragraph(where, tmp_path, monkeypatch):
    if where == "a file":
        (tmp_path / "file").write_text("")
        where = str(tmp_path / "file" / "cache")
    monkeypatch.setenv("GAN_CACHE_DIR", where)
    with pytest.raises(UserError) as refused:
        FolderDataModule(root=str(photo_folder(tmp_path / "photos", 4, side=20)), image_size=16, batch_size=1).prepare_data()
    assert "The cache folder cannot be written" in str(refused.value) and "GAN_CACHE_DIR" in str(refused.value)


# -- no orphans -----------------------------------------------------------------------------------------------------


HOLD = "import sys, time; from pathlib import Path; from gan.cache import locked\nwith locked(Path(sys.argv[1])):\n" \
       "    print('held', flush=True); time.sleep(float(sys.argv[2]))"


def test_a_lock_held_by_a_killed_process_is_taken_over_with_a_line_and_a_waiting_run_says_for_whom(tmp_path, caplog):
    entry = tmp_path / "entry"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(entry), "60"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with caplog.at_level(logging.INFO), locked(entry):
        pass
    assert f"Took over the lock {entry.with_suffix('.lock')} from process {holder.pid}" in caplog.text

    caplog.clear()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(entry), "1.5"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with caplog.at_level(logging.INFO), locked(entry):
        pass
    holder.wait()
    assert f"Waiting for {entry.with_suffix('.lock')}, held by process {holder.pid}" in caplog.text and "since" in caplog.text
    assert "Took over" not in caplog.text  # released in order


STARTER = """import os, subprocess, sys, time
from gan.run.ranks import start_others_tied
start_others_tied()  # as rank zero does before Lightning's launcher starts the others
child = subprocess.Popen([sys.executable, "-c", "import time; from gan.run.ranks import die_with_starter; "
                          "die_with_starter(); print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_process_the_run_started_dies_with_it_however_it_is_killed(tmp_path):
    starter = subprocess.Popen([sys.executable, "-c", STARTER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    other = int(starter.stdout.readline())
    assert not killed_with_survivors(starter, {other}), "the process the killed one started lives on"


@pytest.mark.slow
def test_a_run_killed_while_decoding_leaves_no_process_behind_and_the_same_command_then_finishes(tmp_path):
    root = photo_folder(tmp_path / "photos", 3000)
    args = [*TRAIN, "trainer=cpu", "data=folder", f"data.root={root}", "data.image_size=32", "data.workers=1",
            "eval_every=0", "trainer.max_steps=3", "callbacks.progress_bar.refresh_rate=0"]
    cache = tmp_path / "cache"
    first = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'a'}"], cwd=tmp_path, env=env(cache),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [p for p in (cache / "images").glob(".*.tmp/images.u8") if p.stat().st_size > 0]:
        assert time.monotonic() < deadline and first.poll() is None, "the decode never started"
        time.sleep(0.05)
    assert children(first.pid), "the decode runs in a worker process"
    assert not killed_with_survivors(first), "a decode worker outlived its run"
    again = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path, env=env(cache), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "status.json").read_text())["status"] == "completed"
    assert not list((cache / "images").glob(".*.tmp"))  # the killed decode's half folder is gone


# -- checks before building ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("images", [1, 2])
def test_a_tiny_folder_with_a_batch_of_one_is_refused_before_training(images, tmp_path):
    root = photo_folder(tmp_path / "photos", images, side=20)
    done = subprocess.run([*TRAIN, "trainer=cpu", "data=folder", f"data.root={root}", "data.image_size=16",
                           "data.batch_size=1", "eval_every=0", "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "BatchNorm" in done.stderr and "needs at least 2 images per batch" in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def limit_memory(gib: float):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30), int(gib * 2**30)))
    return apply


def test_a_model_larger_than_the_memory_this_process_may_take_is_refused_before_it_is_built(tmp_path):
    start = time.monotonic()
    done = subprocess.run([*TRAIN, "trainer=cpu", "model.latent_dim=5000000", "eval_every=0", "trainer.max_steps=3",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env(tmp_path / "cache"),
                          capture_output=True, text=True, timeout=300, preexec_fn=limit_memory(8))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "The model is too large for this process: G has 1,281.5 M parameters" in done.stderr
    assert time.monotonic() - start < 60  # refused from shapes, not after filling 8 GB


# -- a kill -9 loop -------------------------------------------------------------------------------------------------


def whole_files(folder: Path) -> list[str]:
    """What is not whole under `folder` (TensorBoard's event files are append-only logs, read by
    TensorBoard up to their last whole record, and are not checked here)."""
    bad = []
    for path in folder.rglob("*"):
        if not path.is_file() or "tfevents" in path.name or path.suffix == ".lock" or path.name == "train.log":
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # a temporary file of a killed writer: hidden, never read, removed by the next write there
        try:
            if path.suffix == ".ckpt" or path.suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".yaml":
                yaml.safe_load(path.read_text())
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    image.load()
        except Exception as exc:
            bad.append(f"{path}: {type(exc).__name__}: {exc}")
        if path.suffix == ".pt" and manifest_of(path).exists():  # without its manifest (its commit record) it is not used
            if json.loads(manifest_of(path).read_text())[path.name]["sha256"] != sha(path):
                bad.append(f"{path}: not what its manifest says")
    return bad


@pytest.mark.slow
def test_twenty_kills_at_random_moments_leave_every_file_whole_and_the_resume_exact(mnist_classifier, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for trained in Path(os.environ["GAN_CACHE_DIR"]).glob("MNIST-*.pt*"):  # the session's classifier, not minutes more
        if "-classifier-" not in trained.name:  # the features files (computed, and killed, below) name their network
            shutil.copy2(trained, cache / trained.name)
    steps = 1200
    base = [*TRAIN, "trainer=cpu", f"trainer.max_steps={steps}", "trainer.log_every_n_steps=10", "sample_every=10",
            "callbacks.last.every_n_train_steps=10", "callbacks.checkpoint.every_n_train_steps=400", "eval_every=100",
            "callbacks.metrics.n=300", "callbacks.progress_bar.refresh_rate=0"]
    straight = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'straight'}"], cwd=tmp_path, env=env(cache),
                              capture_output=True, text=True, timeout=900)  # also fills the cache (features)
    assert straight.returncode == 0, straight.stderr[-3000:]
    rng, resume_from = random.Random(0), None
    for kill in range(20):
        if kill == 14:  # the last kills fall while the reference features are computed again
            for features in cache.glob("*-test-*.pt*"):
                features.unlink()
        folder = tmp_path / f"k{kill:02d}"
        run = subprocess.Popen([*base, f"hydra.run.dir={folder}", *([f"ckpt_path={resume_from}"] if resume_from else [])],
                               cwd=tmp_path, env=env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:  # a moment measured from the job's start (status.json), not from the interpreter's imports
            started = time.monotonic()
            while not (folder / "status.json").exists() and run.poll() is None and time.monotonic() - started < 300:
                time.sleep(0.05)
            run.wait(timeout=rng.uniform(0, 8))
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        if (folder / "checkpoints").is_dir() and readable_checkpoints(folder / "checkpoints"):
            resume_from = folder
    bad = whole_files(tmp_path) + whole_files(cache)
    assert not bad, "\n".join(bad)
    assert resume_from is not None, "no run of the loop got as far as a checkpoint"
    end = tmp_path / "end"
    if readable_checkpoints(resume_from / "checkpoints")[0][1] < steps:
        done = subprocess.run([*base, f"hydra.run.dir={end}", f"ckpt_path={resume_from}"], cwd=tmp_path, env=env(cache),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    else:  # the loop's last run got to the end
        end = resume_from
    a = generator_weights(end / "checkpoints" / "last.ckpt")
    b = generator_weights(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)
