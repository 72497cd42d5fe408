"""The GAN update: one training step = one GAN iteration = one generator update.

Defaults follow the seed (the Keras `gan.py` example), step by step:
  1. D step(s): fakes from G *in inference mode* (Keras `predict` uses BatchNorm running
     statistics, and updates none), then one Adam step on the real batch (label 1) and a
     second one on the fakes (label 0). `d_update=joint` takes one step on the summed loss.
  2. G step: fresh noise through G (training mode) and a frozen D, target label 1
     (non-saturating loss). Only G's optimizer steps.
`trainer.global_step` counts G updates only: the D steps go through the strategy directly, so
`max_steps`, logging, sampling and checkpoint intervals all count GAN iterations.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

D_UPDATES = ("two_steps", "joint")
FAKES_MODES = ("eval", "train")
# Scalars logged every `trainer.log_every_n_steps`; the HParams table reads their last values.
LOGGED_METRICS = ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_acc")


@contextmanager
def frozen(net: nn.Module):
    """No gradient flows into `net`'s parameters inside the block (Keras `trainable=False`)."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


@contextmanager
def mode(net: nn.Module, training: bool):
    was_training = net.training
    net.train(training)
    try:
        yield
    finally:
        net.train(was_training)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_statistics(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the seed prints for D (mean of the real and fake losses, binary accuracy at 0.5),
    plus the mean D(x) and D(G(z))."""
    return {
        "train/d_loss": (bce(real_logits, 1.0) + bce(fake_logits, 0.0)) / 2,
        "train/d_real": torch.sigmoid(real_logits).mean(),
        "train/d_fake": torch.sigmoid(fake_logits).mean(),
        "train/d_acc": ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2,
    }


class GAN(pl.LightningModule):
    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: Callable[..., Optimizer],
        d_optimizer: Callable[..., Optimizer],
        latent_dim: int,
        d_update: str = "two_steps",
        fakes_mode: str = "eval",
        config: dict | None = None,
    ):
        """`config`: the run's config, saved in every checkpoint so that a checkpoint alone can
        rebuild its generator (gan.evaluate, gan.generate)."""
        super().__init__()
        if d_update not in D_UPDATES or fakes_mode not in FAKES_MODES:
            raise ValueError(f"d_update must be one of {D_UPDATES}, fakes_mode one of {FAKES_MODES}")
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.latent_dim = latent_dim
        self.d_update, self.fakes_mode = d_update, fakes_mode
        self.config = config

    def configure_optimizers(self):
        return self.g_optimizer(self.generator.parameters()), self.d_optimizer(self.discriminator.parameters())

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, training: bool = False) -> torch.Tensor:
        """G(z) without gradients; in inference mode unless `training` (then BatchNorm uses and
        updates batch statistics, as a forward pass in training mode does)."""
        with mode(self.generator, training):
            return self.generator(z)

    def training_step(self, reals: torch.Tensor) -> None:
        """`reals` is (n_critic, batch, C, H, W): one D step per real batch, then one G step
        (train.py has the datamodule draw `gan.n_critic` real batches per iteration)."""
        g_opt, d_opt = self.optimizers()
        for real in reals.to(self.dtype):  # the images are float32; a `*-true` precision casts the nets
            real_logits, fake_logits = self.discriminator_step(real, d_opt)
        g_loss = self.generator_step(len(reals[0]), g_opt)
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_train_scalars(real_logits, fake_logits, g_loss)

    def log_train_scalars(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, g_loss: torch.Tensor) -> None:
        """Called only on the steps Lightning writes (every `log_every_n_steps`): each
        `self.log` costs about as much as a small layer's forward pass on the CPU. Logging
        `step` puts the scalars at the iteration count, where the grids and checkpoints are."""
        g_opt, d_opt = self.optimizers()
        stats = d_statistics(real_logits, fake_logits)
        self.log_dict({"train/d_loss": stats.pop("train/d_loss"), "train/g_loss": g_loss}, prog_bar=True)
        self.log_dict({
            **stats,
            "train/lr_g": g_opt.param_groups[0]["lr"],
            "train/lr_d": d_opt.param_groups[0]["lr"],
            "step": float(self.global_step),
        })

    def discriminator_step(self, real: torch.Tensor, d_opt) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns D's logits on the real and fake batch, each as computed before the update
        that used it (what Keras's `train_on_batch` reports)."""
        fake = self.sample(self.noise(len(real)), training=self.fakes_mode == "train")
        if self.d_update == "two_steps":
            real_logits = self.discriminator(real)
            self._d_step(d_opt, bce(real_logits, 1.0))
            fake_logits = self.discriminator(fake)
            self._d_step(d_opt, bce(fake_logits, 0.0))
        else:
            real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
            self._d_step(d_opt, bce(real_logits, 1.0) + bce(fake_logits, 0.0))
        return real_logits.detach(), fake_logits.detach()

    def generator_step(self, batch_size: int, g_opt) -> torch.Tensor:
        with frozen(self.discriminator):
            loss = bce(self.discriminator(self.generator(self.noise(batch_size))), 1.0)
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            g_opt.step()  # a LightningOptimizer step: advances global_step by one
        return loss.detach()

    def _d_step(self, d_opt, loss: torch.Tensor) -> None:
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # Same path as LightningOptimizer.step (precision plugin, gradient hooks) minus its
        # step counter, so that global_step stays one per GAN iteration.
        self.trainer.strategy.optimizer_step(d_opt.optimizer, closure=lambda: None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the noise RNG so a resumed run draws what the uninterrupted run would have."""
        checkpoint["config"] = self.config
        checkpoint["rng_states"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states", {})
        if "cpu" in states:
            torch.set_rng_state(states["cpu"])
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
