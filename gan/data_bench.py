"""Data speed and memory, measured: decoding time per 10,000 images, training it/s from a folder
against the same images read from MNIST's own files, and the memory of a run whose images are
larger than the memory it is allowed.

    python -m gan.data_bench [n=10000] [iterations=1000] [rounds=5] [big=1500] [budget=256]

Everything is written under a temporary folder (the images and a fresh cache), so the decoding
is timed from scratch. The it/s runs alternate (MNIST, folder in memory, folder memory-mapped,
then again), so a machine whose speed drifts affects all three alike, and each source is compared
with the MNIST run of its own round; the rate is the steady state, counted after the first 20%
of the iterations. Needs MNIST under $GAN_DATA_DIR (or data/).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image

from gan.config import CONF
from gan.config.cli import run
from gan.files import save_image
from gan.processes import die_with_parent

ROOT = CONF.parent  # the checkout: train.py beside conf/
RATES: list[float] = []  # filled by Rate, read by the it/s rounds


class Rate(pl.Callback):
    """Iterations per second between iteration `skip` and the end of training."""

    def __init__(self, skip: int = 200):
        self.skip, self.start = skip, None

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if self.start is None and trainer.global_step >= self.skip:
            self.start = (trainer.global_step, time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, *args) -> None:
        step, start = self.start
        RATES.append((trainer.global_step - step) / (time.perf_counter() - start))


def limited_train(budget_mib: int, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python train.py ARGS` allowed `budget_mib` MiB of data memory (RLIMIT_DATA: what the process
    allocates, not the files it maps read-only) beyond what torch and Lightning take once imported.
    Its stdout ends with `memory: {...}`: the growth of its data memory, its peak resident memory
    (page cache of mapped files included) and its anonymous resident memory at the end."""
    code = f"""
import json, resource, runpy, sys
import torch, pytorch_lightning, gan.training.job
def field(name):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(name + ":"))
start = field("VmData")
resource.setrlimit(resource.RLIMIT_DATA, (start + {budget_mib} * 2**20, resource.RLIM_INFINITY))
sys.argv = ["train.py", *{list(args)!r}]
try:
    runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
finally:
    print("memory: " + json.dumps({{"data_growth": field("VmData") - start, "peak_rss": field("VmHWM"),
                                   "anonymous": field("RssAnon")}}), flush=True)
"""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=900,
                          preexec_fn=functools.partial(die_with_parent, os.getpid()))  # never outlives the bench


def grey_squares(folder: Path, n: int, side: int = 512) -> int:
    """n distinct grey side x side PNGs (stored uncompressed, so writing them is quick); their pixel bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    base = np.random.default_rng(0).integers(0, 256, (side, side), np.uint8)
    for i in range(n):
        save_image(Image.fromarray(np.roll(base, i, axis=1)), folder / f"{i:05d}.png", False, compress_level=0)
    return n * side * side


def photos(folder: Path, n: int, side: int = 256) -> None:
    """n smooth colour JPEGs, side x side (quality 90), like camera crops."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8))
        save_image(small.resize((side, side), Image.BICUBIC), folder / f"{i:05d}.jpg", False, quality=90)


def decode_seconds(root: Path, **options) -> tuple[float, int]:
    from gan.data import FolderDataModule

    dm = FolderDataModule(root=str(root), **options)
    dm.prepare_data()
    return dm.meta["decode_seconds"], dm.meta["count"]


def data_path_microseconds(datamodules: dict, iterations: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Median µs per iteration of the data path alone, for each datamodule, interleaved: drawing the
    batch indices, gathering the batch where the images are, and scaling it to [-1, 1]."""
    import torch

    from gan.data import StepBatches, to_unit

    times: dict[str, list[float]] = {name: [] for name in datamodules}
    for _ in range(repeats):
        for name, dm in datamodules.items():
            dm.setup("fit")
            batches = iter(StepBatches(len(dm.images), 32, 1, "with_replacement", seed=0, chunk_length=lambda t: 25))
            start, done = time.perf_counter(), 0
            while done < iterations:
                for reals, _ in dm.transfer_batch_to_device(next(batches), torch.device("cpu"), 0):
                    to_unit(reals)
                    done += 1
            times[name].append((time.perf_counter() - start) / done * 1e6)
    return {name: float(np.median(values)) for name, values in times.items()}


def rates(png: Path, iterations: int, rounds: int, run_dir: Path) -> dict[str, list[float]]:
    from hydra import compose, initialize_config_dir

    from gan.training import resolvers
    from gan.training.fit import fit

    resolvers.register()
    sources = {"MNIST files": ["data=mnist"],
               "folder, in memory": ["data=folder", f"data.root={png}", "data.channels=1", "data.image_size=28",
                                     "data.in_memory=true"],
               "folder, memory-mapped": ["data=folder", f"data.root={png}", "data.channels=1", "data.image_size=28",
                                         "data.in_memory=false"]}
    found: dict[str, list[float]] = {name: [] for name in sources}
    for r in range(rounds):
        for name, overrides in sources.items():
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("train", overrides=[*overrides, "trainer=cpu", f"trainer.max_steps={iterations}",
                                                  "eval_every=0", f"sample_every={iterations}",
                                                  "callbacks.progress_bar.refresh_rate=0",
                                                  f"+callbacks.rate._target_={__name__}.Rate",
                                                  f"+callbacks.rate.skip={iterations // 5}",
                                                  f"run_dir={run_dir / f'{r}-{len(found[name])}-{name[:6]}'}"])
            fit(cfg)
            found[name].append(RATES.pop())
    return found


@dataclass
class Args:
    n: int = 10_000  # images per decoding measurement
    iterations: int = 1000  # seed-MLP iterations per it/s run
    rounds: int = 5  # it/s runs per data source, alternating
    big: int = 1500  # grey 512x512 images of the memory measurement
    budget: int = 256  # MiB the memory measurement's run may allocate


def main() -> None:
    run(measure, Args, __doc__)


def measure(args: Args) -> None:
    data_root = os.environ.get("GAN_DATA_DIR", "data")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GAN_CACHE_DIR"] = str(tmp / "cache")
        from gan.export_images import Args, export

        export(Args(out=str(tmp / "png"), root=data_root, n=args.n))
        photos(tmp / "jpg", args.n)
        cores = os.cpu_count()
        print(f"\ndecoding {args.n} images ({cores} cores; workers=auto is one per core, at most 8):")
        for label, root, options in [
            ("MNIST PNGs, 28x28 grey", tmp / "png", {"image_size": 28, "channels": 1, "labels": "folders"}),
            ("MNIST PNGs, 28x28 grey, in one process", tmp / "png", {"image_size": 28, "channels": 1, "workers": 0}),
            ("MNIST PNGs -> 64x64 colour", tmp / "png", {"image_size": 64, "channels": 3}),
            ("256x256 colour JPEGs -> 64x64", tmp / "jpg", {"image_size": 64, "channels": 3}),
        ]:
            seconds, count = decode_seconds(root, **options)
            print(f"  {label:<42} {seconds:6.1f} s  ({seconds * 10_000 / count:.1f} s per 10k, {count / seconds:.0f} images/s)")

        from gan.data import FolderDataModule, MNISTDataModule

        folder = {"image_size": 28, "channels": 1, "root": str(tmp / "png"), "labels": "folders"}
        micro = data_path_microseconds({"MNIST files": MNISTDataModule(root=data_root),
                                        "folder, in memory": FolderDataModule(**folder, in_memory=True),
                                        "folder, memory-mapped": FolderDataModule(**folder, in_memory=False)})
        print("\nthe data path alone (draw the indices, gather a batch of 32, scale it), median of 7 interleaved runs:")
        for name, us in micro.items():
            print(f"  {name:<24} {us:6.1f} µs per iteration")

        print(f"\nseed MLP, batch 32, {args.iterations} iterations per run, steady state, {args.rounds} alternating rounds:")
        found = rates(tmp / "png", args.iterations, args.rounds, tmp / "runs")
        mnist = np.array(found["MNIST files"])
        for name, values in found.items():  # ratios within a round: runs minutes apart, not the whole bench
            ratios = np.array(values) / mnist
            print(f"  {name:<24} {' '.join(f'{v:6.1f}' for v in values)} it/s;  / MNIST files in the same round: "
                  f"{' '.join(f'{r:.2f}' for r in ratios)}, median {np.median(ratios):.3f}")

        pixels = grey_squares(tmp / "big", args.big)
        run = ["data=folder", f"data.root={tmp / 'big'}", "data.channels=1", "data.image_size=512", "data.batch_size=2",
               "model=dcgan", "model.generator.width=2", "model.discriminator.width=2", "trainer=cpu",
               "trainer.max_steps=50", "eval_every=0", "sample_every=50"]  # a small model: the data's memory is measured
        print(f"\nmemory: {args.big} grey 512x512 images ({pixels / 2**20:.0f} MiB of pixels), width-2 DCGAN, batch 2, 50 its, "
              f"with {args.budget} MiB allowed beyond torch's own (RLIMIT_DATA):")
        for label, extra in [("data.in_memory=auto", []), ("data.in_memory=true", ["data.in_memory=true"])]:
            started = time.perf_counter()
            done = limited_train(args.budget, run + extra, cwd=tmp, env={"GAN_DATA_DIR": data_root})
            seconds = time.perf_counter() - started
            memory = json.loads(done.stdout.split("memory: ")[1].splitlines()[0]) if "memory: " in done.stdout else {}
            said = next((line for line in (done.stdout + done.stderr).splitlines() if "Training images" in line
                         or "do not fit" in line), "").split(" - ")[-1]
            print(f"  {label}: exit {done.returncode} after {seconds:.0f} s (decoding included the first time); "
                  + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in memory.items()) + (f"\n    {said}" if said else ""))


if __name__ == "__main__":
    main()
