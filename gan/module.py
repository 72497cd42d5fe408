"""The GAN update: one GAN iteration = one generator update; a training step runs several.

Defaults follow the Keras reference example (`gan/gan.py` of Keras-GAN), step by step:
  1. D step(s): fakes from G *in inference mode* (Keras `predict` uses BatchNorm running
     statistics, and updates none), then one Adam step on the real batch (label 1) and a
     second one on the fakes (label 0). `d_update=joint` takes one step on the summed loss.
  2. G step: fresh noise through G (training mode) and a frozen D, target label 1
     (non-saturating loss). Only G's optimizer steps.
  3. With `ema_decay`, the moving average of G's weights takes one step.
The objective is the `loss` object's (gan/losses.py; the Keras example's is NonSaturating). D sees
every image through `augment` (gan/augment/: the identity unless the run augments for small data):
the reals and fakes of its own steps and G's fakes, gradients flowing through to G. Conditional
runs feed the real batch's labels to D with the reals and with the fakes made for it; G's own
step draws its labels uniformly. Everything random in iteration t (the noise, G's labels, the
gradient penalty's mixing weights, the augmentation's draws) is drawn before it from (seed, t)
for the global batch (gan/engine/draws.py), like the real batch (gan/data/batches.py): with
several processes each keeps its slice.
`trainer.global_step` counts GAN iterations, so `max_steps`, logging, sampling and checkpoint
intervals all count them; one training step runs a chunk of iterations that ends on the next
such event (gan/engine/chunks.py), which is the same as running them one step each, bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from typing import Literal

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan.augment import Augment, NoAugment
from gan.config.building import build, network_optimizer
from gan.config.constraints import OpenFraction, PosInt
from gan.data import Chunk, to_unit
from gan.engine.draws import Draws
from gan.engine.execution import Execution
from gan.losses import Loss, NonSaturating, gradient_penalty, r1_penalty

log = logging.getLogger(__name__)

D_UPDATES = ("two_steps", "joint")
FAKES_MODES = ("eval", "train")
# Scalars logged every `trainer.log_every_n_steps`; the HParams table reads their last values.
LOGGED_METRICS = ("loss/d", "loss/g", "train/d_real", "train/d_fake", "train/d_acc")


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


def d_statistics(real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: Loss) -> dict[str, torch.Tensor]:
    """What the Keras example prints for D (the mean of its losses on the real and the fake batch, its
    accuracy), plus its mean output on each: P(real) for the BCE losses, the raw score otherwise."""
    real, fake = loss.outputs(real_logits), loss.outputs(fake_logits)
    return {
        "loss/d": (loss.d_real(real_logits) + loss.d_fake(fake_logits)) / 2,
        "train/d_real": real.mean(),
        "train/d_fake": fake.mean(),
        "train/d_acc": ((real > loss.threshold).float().mean() + (fake < loss.threshold).float().mean()) / 2,
    }


class GAN(pl.LightningModule):
    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: Callable[..., Optimizer],
        d_optimizer: Callable[..., Optimizer],
        loss: Loss | None = None,
        d_update: Literal[D_UPDATES] = "two_steps",
        fakes_mode: Literal[FAKES_MODES] = "eval",
        ema_decay: OpenFraction | None = None,
        n_critic: PosInt = 1,
        cuda_graph: bool = True,
        augment: Augment | None = None,
    ):
        """The update rule's parameters are the `gan` config node (`gan.d_update`, ...);
        `cuda_graph` is how it may execute (gan/engine/execution.py); `augment`: what D sees (the `augment` group)."""
        super().__init__()
        if d_update not in D_UPDATES or fakes_mode not in FAKES_MODES:
            raise ValueError(f"d_update must be one of {D_UPDATES}, fakes_mode one of {FAKES_MODES}")
        self.loss = loss or NonSaturating()
        self.augment = augment or NoAugment()
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.latent_dim, self.num_classes = generator.latent_dim, generator.num_classes
        self.d_update, self.fakes_mode, self.n_critic, self.cuda_graph = d_update, fakes_mode, n_critic, cuda_graph
        self.execution = Execution()  # how the steps run; fitted to the trainer at train start
        self._ema_started = False
        self.generator_ema = None
        if ema_decay is not None:
            # Parameters averaged (torch's EMA); buffers (BatchNorm running statistics) copied
            # from G after each update, as averaging statistics of other weights means nothing.
            self.generator_ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=False)
            self.generator_ema.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> GAN:
        """The module a run's config describes: `model`, `loss`, `optimizer` and `gan`."""
        return cls(
            generator=build(cfg, "model.generator"),
            discriminator=build(cfg, "model.discriminator"),
            g_optimizer=network_optimizer(cfg.optimizer, "generator"),
            d_optimizer=network_optimizer(cfg.optimizer, "discriminator"),
            loss=build(cfg, "loss"),
            augment=build(cfg, "augment") if cfg.get("augment") else None,  # (configs older than the group have none)
            **cfg.gan,
        )

    @property
    def eval_generator(self) -> nn.Module:
        """The generator that samples, metrics and gan.generate use: the EMA one when there is one."""
        return self.generator if self.generator_ema is None else self.generator_ema.module

    def configure_optimizers(self):
        return self.g_optimizer(self.generator.parameters()), self.d_optimizer(self.discriminator.parameters())

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None, training: bool = False,
               net: nn.Module | None = None) -> torch.Tensor:
        """G(z) without gradients; in inference mode unless `training` (then BatchNorm uses and
        updates batch statistics, as a forward pass in training mode does). `net`: another
        generator (the EMA one) instead of the trained G."""
        net = self.generator if net is None else net
        with mode(net, training):
            return net(z, labels)

    def on_train_start(self) -> None:
        self.execution.start(self)
        if not isinstance(self.augment, NoAugment):
            log.info("D sees every image augmented: %s.", self.augment.describe(self.generator.out_shape[0]))

    def training_step(self, chunk: Chunk) -> None:
        """Runs the chunk's GAN iterations (gan/engine/chunks.py plans them), each exactly as a
        training step of its own would, and logs the last one's scalars when it is a logging step."""
        out = self.execution.run(self, chunk)
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_train_scalars(*out)

    def iteration(self, reals: torch.Tensor, labels: torch.Tensor, draws: Draws):
        """One GAN iteration on `reals` (n_critic, batch, C, H, W; uint8 pixels or floats in
        [-1, 1]), their labels (n_critic, batch) and the iteration's random draws (gan/engine/draws.py):
        one D step per real batch, then one G step, then the EMA. Returns what log_train_scalars
        needs. No host synchronisation and no random draw inside, so a CUDA graph can capture it."""
        assert len(reals) == self.n_critic, f"{len(reals)} real batches for n_critic={self.n_critic}"
        g_opt, d_opt = self.optimizers()
        reals = to_unit(reals) if reals.dtype == torch.uint8 else reals  # the datasets' pixels, scaled to [-1, 1] here
        seen_reals = []
        for i, (real, y) in enumerate(zip(reals.to(self.dtype), labels)):  # float32 images; `*-true` casts the nets
            mix = None if draws.mix is None else draws.mix[i]
            real_logits, fake_logits, penalties = self.discriminator_step(
                real, y if self.num_classes else None, d_opt, draws.d_noise[i].to(self.dtype), mix, draws.d_seen(i))
            seen_reals.append(real_logits)
        self.augment.adapt(seen_reals)
        g_loss = self.generator_step(draws.g_noise.to(self.dtype), draws.g_labels, g_opt, draws.g_seen)
        if self.generator_ema is not None:
            self.update_ema()
        return real_logits, fake_logits, g_loss, penalties

    def log_train_scalars(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, g_loss: torch.Tensor,
                          penalties: dict[str, torch.Tensor]) -> None:
        """Called only on the steps Lightning writes (every `log_every_n_steps`): each
        `self.log` costs as much as a small layer's forward pass on the CPU. Logging
        `step` puts the scalars at the iteration count, where the grids and checkpoints are.
        With several processes each scalar is averaged over them (equal slices of the global
        batch, so the mean of their means is the global batch's), and every process holds it."""
        g_opt, d_opt = self.optimizers()
        stats = d_statistics(real_logits, fake_logits, self.loss)
        sync = self.trainer.world_size > 1
        self.log_dict({"loss/d": stats.pop("loss/d"), "loss/g": g_loss}, prog_bar=True, sync_dist=sync)
        self.log_dict({
            **stats,
            **penalties,
            **self.augment.scalars(),
            "train/lr_g": g_opt.param_groups[0]["lr"],
            "train/lr_d": d_opt.param_groups[0]["lr"],
            "step": float(self.global_step),
        }, sync_dist=sync)

    def discriminator_step(self, real: torch.Tensor, labels: torch.Tensor | None, d_opt, z: torch.Tensor,
                           mix: torch.Tensor | None = None, seen: tuple = (None, None),
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns D's logits on the real and fake batch, each as computed before the update
        that used it (what Keras's `train_on_batch` reports), and the penalties it added
        (`loss/r1`, `loss/gp`). R1 joins the real term, taken on the reals before augmentation
        (as ADA takes it); the gradient penalty, which needs both batches, joins the fake term
        or the joint loss, on the pair as D saw it. `z`: the fakes' noise; `mix`: the penalty's
        mixing weights; `seen`: the augmentation draws of the reals and of the fakes. D's own
        forward passes go through its process replica."""
        fake = self.sample(z, labels, training=self.fakes_mode == "train")
        _, discriminator = self.execution.networks(self)
        penalties: dict[str, torch.Tensor] = {}
        if self.loss.r1_gamma:
            real = real.detach().requires_grad_(True)
        real_seen, fake_seen = self.augment(real, seen[0]), self.augment(fake, seen[1])
        real_logits = discriminator(real_seen, labels)
        real_loss = self.loss.d_real(real_logits)
        if self.loss.r1_gamma:
            penalties["loss/r1"] = r1_penalty(real_logits, real)
            real_loss = real_loss + self.loss.r1_gamma / 2 * penalties["loss/r1"]
        if self.d_update == "two_steps":
            self.step(d_opt, real_loss)
            fake_logits = discriminator(fake_seen, labels)
            loss = self.loss.d_fake(fake_logits)
        else:
            fake_logits = discriminator(fake_seen, labels)
            loss = real_loss + self.loss.d_fake(fake_logits)
        if self.loss.gp_weight:
            penalties["loss/gp"] = gradient_penalty(self.discriminator, real_seen, fake_seen, labels, mix)
            loss = loss + self.loss.gp_weight * penalties["loss/gp"]
        self.step(d_opt, loss)
        return real_logits.detach(), fake_logits.detach(), {k: v.detach() for k, v in penalties.items()}

    def generator_step(self, z: torch.Tensor, labels: torch.Tensor | None, g_opt, seen=None) -> torch.Tensor:
        """G's step on noise `z` and labels (conditional), D seeing the fakes through the
        augmentation (draws `seen`). G runs through its process replica; D is the bare, frozen
        network: nothing of D's is reduced or stepped here."""
        generator, _ = self.execution.networks(self)
        with frozen(self.discriminator):
            loss = self.loss.g(self.discriminator(self.augment(generator(z, labels), seen), labels))
            self.step(g_opt, loss)
        return loss.detach()

    @torch.no_grad()
    def update_ema(self) -> None:
        ema = self.generator_ema
        if self._ema_started:  # what update_parameters does once it has started, without its host-side check
            ema.multi_avg_fn([p.detach() for p in ema.module.parameters()], [p.detach() for p in self.generator.parameters()],
                             ema.n_averaged)
            ema.n_averaged += 1
        else:  # the first update copies G (a fresh average) or continues a resumed one
            ema.update_parameters(self.generator)
            self._ema_started = True
        for averaged, live in zip(ema.module.buffers(), self.generator.buffers()):
            averaged.copy_(live)

    def step(self, opt, loss: torch.Tensor) -> None:
        """One backward pass and optimizer step, as this fit executes them (gan/engine/execution.py)."""
        self.execution.step(self, opt, loss)
