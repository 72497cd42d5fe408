"""Framework tax: the runner's iterations/s against a hand-written loop doing the same maths.

    python -m gan.bench [steps] [device]

Both sides run the seed model and update (two D steps on reals then fakes made in inference
mode, one G step through a frozen D) on the in-memory MNIST tensor, in one process, one after
the other, each timed after a warm-up; the runner side is the full `train.py` path
(datamodule, module, callbacks, TensorBoard logging every 50 steps) minus checkpoints and
sample images, timed from inside the loop so set-up is not counted. Prints both rates and
their ratio.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

import gan.rundir  # noqa: F401
from gan.train import train

CONF = str(Path(__file__).resolve().parents[1] / "conf")
WARMUP = 50


def hand_loop(cfg, steps: int, device: str) -> float:
    from hydra.utils import instantiate

    from gan.data import MNISTDataModule

    dm = MNISTDataModule(root=cfg.data.root)
    dm.setup()
    images = dm.images.to(device)
    g = instantiate(cfg.model.generator).to(device)
    d = instantiate(cfg.model.discriminator).to(device)
    g_opt = instantiate(cfg.optimizer.generator)(g.parameters())
    d_opt = instantiate(cfg.optimizer.discriminator)(d.parameters())
    ones, zeros = torch.ones(32, device=device), torch.zeros(32, device=device)

    def step():
        real = images[torch.randint(len(images), (32,)).to(device)]
        with torch.no_grad():
            g.eval()
            fake = g(torch.randn(32, 100, device=device))
            g.train()
        for x, y in ((real, ones), (fake, zeros)):
            d_opt.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(d(x), y).backward()
            d_opt.step()
        d.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(d(g(torch.randn(32, 100, device=device))), ones).backward()
        g_opt.step()
        d.requires_grad_(True)

    for _ in range(WARMUP):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    """Wall time of the GAN iterations after the first `skip`, set-up and data loading excluded."""

    rate = float("nan")

    def __init__(self, skip: int):
        self.skip = skip

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, *args) -> None:
        StepTimer.rate = (trainer.global_step - self.skip) / (time.perf_counter() - self.start)


def runner(steps: int, accelerator: str) -> float:
    with tempfile.TemporaryDirectory() as run_dir, initialize_config_dir(config_dir=CONF, version_base="1.3"):
        train(compose("train", overrides=[
            f"run_dir={run_dir}", f"trainer.accelerator={accelerator}", f"trainer.max_steps={WARMUP + steps}",
            "~callbacks.checkpoint", "~callbacks.samples",
            "callbacks.progress_bar.refresh_rate=0", "+callbacks.timer._target_=gan.bench.StepTimer", f"+callbacks.timer.skip={WARMUP}",
        ]))
    return importlib.import_module("gan.bench").StepTimer.rate  # Hydra built it from gan.bench, not __main__


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    device = sys.argv[2] if len(sys.argv) > 2 else ("cuda" if torch.cuda.is_available() else "cpu")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["run_dir=/unused"])
    hand = hand_loop(cfg, steps, device)
    ours = runner(steps, "gpu" if device == "cuda" else "cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {steps} GAN iterations each")
    print(f"hand-written loop: {hand:8.1f} it/s")
    print(f"gan runner:        {ours:8.1f} it/s")
    print(f"runner / hand:     {ours / hand:8.3f}")


if __name__ == "__main__":
    main()
