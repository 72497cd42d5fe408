"""Framework tax: the runner's iterations/s against a hand-written loop doing the same maths.

    python -m gan.bench [steps] [cpu|cuda]

The runner is the full `train.py` path (datamodule, module, callbacks, TensorBoard logging every
50 steps) minus checkpoints and sample images. A callback inside that run times each block of
100 runner iterations, then runs 100 iterations of a plain PyTorch loop on copies of the same
networks, optimizers and data tensor, and times those. Interleaving the two in one process makes
the ratio hold on a machine whose speed drifts (a shared VM). Prints both rates and their ratio.
"""

from __future__ import annotations

import copy
import importlib
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from gan import resolvers
from gan.fit import fit

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def plain_step(g, d, g_opt, d_opt, images: torch.Tensor, batch: int, latent: int):
    """The Keras example's update written out in plain PyTorch: what the runner is measured against."""
    device = images.device
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)

    def step() -> None:
        real = images[torch.randint(len(images), (batch,)).to(device)]
        with torch.no_grad():
            g.eval()
            fake = g(torch.randn(batch, latent, device=device))
            g.train()
        for x, y in ((real, ones), (fake, zeros)):
            d_opt.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(d(x), y).backward()
            d_opt.step()
        d.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(d(g(torch.randn(batch, latent, device=device))), ones).backward()
        g_opt.step()
        d.requires_grad_(True)

    return step


class Interleaved(pl.Callback):
    """Times runner blocks and plain-loop blocks alternately, after `skip` warm-up iterations."""

    result: dict[str, float] = {}

    def __init__(self, skip: int = 50, block: int = 100):
        self.skip, self.block = skip, block
        self.runner_s = self.plain_s = 0.0
        self.runner_steps = self.plain_steps = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        g, d = copy.deepcopy(pl_module.generator), copy.deepcopy(pl_module.discriminator)
        g_opt, d_opt = (type(o.optimizer)(net.parameters(), **o.optimizer.defaults)
                        for o, net in zip(pl_module.optimizers(), (g, d)))
        images = trainer.datamodule.images.to(pl_module.device)
        self.cuda = pl_module.device.type == "cuda"
        self.plain = plain_step(g, d, g_opt, d_opt, images, trainer.datamodule.batch_size, pl_module.latent_dim)
        for _ in range(self.skip):
            self.plain()

    def _sync(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.skip:
            self.start = self._sync()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        done = trainer.global_step - self.skip
        if done <= 0 or done % self.block:
            return
        now = self._sync()
        self.runner_s += now - self.start
        self.runner_steps += self.block
        for _ in range(self.block):
            self.plain()
        self.start = self._sync()
        self.plain_s += self.start - now
        self.plain_steps += self.block
        Interleaved.result = {"runner": self.runner_steps / self.runner_s, "plain": self.plain_steps / self.plain_s}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    device = sys.argv[2] if len(sys.argv) > 2 else ("cuda" if torch.cuda.is_available() else "cpu")
    resolvers.register()
    with tempfile.TemporaryDirectory() as run_dir, initialize_config_dir(config_dir=CONF, version_base="1.3"):
        fit(compose("train", overrides=[
            f"run_dir={run_dir}", f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
            f"trainer.max_steps={50 + steps}", "~callbacks.checkpoint", "~callbacks.last", "~callbacks.samples",
            "callbacks.progress_bar.refresh_rate=0", "+callbacks.bench._target_=gan.bench.Interleaved",
        ]))
    result = importlib.import_module("gan.bench").Interleaved.result  # Hydra built it from gan.bench, not __main__
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {steps} GAN iterations each, interleaved in blocks of 100")
    print(f"hand-written loop: {result['plain']:8.1f} it/s")
    print(f"gan runner:        {result['runner']:8.1f} it/s")
    print(f"runner / hand:     {result['runner'] / result['plain']:8.3f}")


if __name__ == "__main__":
    main()
