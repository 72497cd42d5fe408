"""The GAN update: one GAN iteration = one generator update; a training step runs several.

Defaults follow the Keras reference example (`gan/gan.py` of Keras-GAN), step by step:
  1. D step(s): fakes from G *in inference mode* (Keras `predict` uses BatchNorm running
     statistics, and updates none), then one Adam step on the real batch (label 1) and a
     second one on the fakes (label 0). `d_update=joint` takes one step on the summed loss.
  2. G step: fresh noise through G (training mode) and a frozen D, target label 1
     (non-saturating loss). Only G's optimizer steps.
  3. With `ema_decay` or `ema_kimg`, the moving average of G's weights takes one step.
The objective is the `loss` object's (gan/losses.py; the Keras example's is NonSaturating). A
relativistic loss (`loss=rpgan`) compares pairs: D takes one step on its real and fake batch, and
G's step sees a real batch of its own beside its fakes (the iteration's last real batch). D sees
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
import torch.nn.functional as F
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan.augment import Augment, NoAugment
from gan.config.building import build, network_optimizer
from gan.config.constraints import NonNegFloat, OpenFraction, PosInt
from gan.data import Chunk, to_unit
from gan.engine.draws import Draws
from gan.engine.execution import Execution
from gan.losses import Loss, NonSaturating, at_least_float32, gradient_penalty, r1_penalty
from gan.schedules import Scheduled

log = logging.getLogger(__name__)

D_UPDATES = ("two_steps", "joint")
FAKES_MODES = ("eval", "train")
PENALTIES = ("r1", "r2", "gp")  # the gradient penalties D's step may add (gan/losses.py)


def ema_problems(ema_decay: float | None, ema_kimg: float | None, ema_rampup: float | None) -> list[str]:
    """Why these keys of the `gan` node cannot set the average of G's weights together."""
    if ema_decay is not None and ema_kimg is not None:
        return [f"`gan.ema_decay={ema_decay}` and `gan.ema_kimg={ema_kimg}` both set the average of G's weights: "
                f"keep one (a fixed decay per iteration, or a half-life in thousands of images) and set the other to null"]
    if ema_rampup is not None and ema_kimg is None:
        return [f"`gan.ema_rampup={ema_rampup}` warms up the half-life `gan.ema_kimg`, which is null: set gan.ema_kimg "
                f"(StyleGAN2: 10) or gan.ema_rampup=null"]
    return []
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
    accuracy; a pairwise loss's own value), plus its mean output on each: P(real) for the BCE
    losses, the raw score otherwise."""
    real, fake = loss.outputs(real_logits), loss.outputs(fake_logits)
    return {
        "loss/d": loss.d(real_logits, fake_logits) / (1 if loss.pairs else 2),
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
        ema_kimg: NonNegFloat | None = None,
        ema_rampup: NonNegFloat | None = None,
        n_critic: PosInt = 1,
        cuda_graph: bool = True,
        augment: Augment | None = None,
        schedule: Scheduled | None = None,
    ):
        """The update rule's parameters are the `gan` config node (`gan.d_update`, ...);
        `cuda_graph` is how it may execute (gan/engine/execution.py); `augment`: what D sees (the `augment` group);
        `schedule`: the values that move over training (the `schedule` node, gan/schedules.py).
        The average of G's weights: `ema_decay`, a fixed decay per iteration; or `ema_kimg`, its
        half-life in thousands of images, as StyleGAN sets it, with `ema_rampup` (the half-life at
        most that share of the images seen so far, so early weights are forgotten fast)."""
        super().__init__()
        if d_update not in D_UPDATES or fakes_mode not in FAKES_MODES:
            raise ValueError(f"d_update must be one of {D_UPDATES}, fakes_mode one of {FAKES_MODES}")
        if problems := ema_problems(ema_decay, ema_kimg, ema_rampup):
            raise ValueError(problems[0])
        self.loss = loss or NonSaturating()
        self.augment = augment or NoAugment()
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.latent_dim, self.num_classes = generator.latent_dim, generator.num_classes
        self.d_update, self.fakes_mode, self.n_critic, self.cuda_graph = d_update, fakes_mode, n_critic, cuda_graph
        self.ema_kimg, self.ema_rampup, self.schedule = ema_kimg, ema_rampup, schedule
        for name in PENALTIES:  # the penalties' last values, logged also on the steps a lazy penalty skips
            self.register_buffer(f"last_{name}", torch.zeros(()), persistent=False)
        weights = {"r1": self.loss.r1_gamma, "r2": self.loss.r2_gamma, "gp": self.loss.gp_weight}
        self.logged_penalties = tuple(name for name in PENALTIES if weights[name])
        self.auxiliary = bool(getattr(discriminator, "auxiliary", False))  # AC-GAN: D's output carries class logits
        self.register_buffer("last_class", torch.zeros(()), persistent=False)  # its cross-entropy on the reals
        self.register_buffer("last_class_acc", torch.zeros(()), persistent=False)  # and its accuracy there
        self.execution = Execution()  # how the steps run; fitted to the trainer at train start
        self._ema_started = False
        self.generator_ema = None
        if ema_decay is not None or ema_kimg is not None:
            # Parameters averaged (torch's EMA); buffers (BatchNorm running statistics) copied
            # from G after each update, as averaging statistics of other weights means nothing.
            decay = None if ema_decay is None else get_ema_multi_avg_fn(ema_decay)  # ema_kimg: update_ema's own decay
            self.generator_ema = AveragedModel(generator, multi_avg_fn=decay, use_buffers=False)
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
            schedule=Scheduled.from_config(cfg),
            **cfg.gan,
        )

    @staticmethod
    def real_batches(cfg: DictConfig) -> int:
        """Real batches per iteration: one per D step, and one for G's step when the loss compares pairs."""
        return cfg.gan.n_critic + int(getattr(get_class(cfg.loss._target_), "pairs", False))

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
        """One GAN iteration on `reals` (n_critic batches, and G's with a pairwise loss; each (batch,
        C, H, W), uint8 pixels or floats in [-1, 1]), their labels and the iteration's random draws
        (gan/engine/draws.py): one D step per real batch, then one G step, then the EMA. Returns what
        log_train_scalars needs. No host synchronisation and no random draw inside, so a CUDA graph
        can capture it."""
        pairs = self.loss.pairs
        assert len(reals) == self.n_critic + pairs, f"{len(reals)} real batches for n_critic={self.n_critic}"
        g_opt, d_opt = self.optimizers()
        reals = to_unit(reals) if reals.dtype == torch.uint8 else reals  # the datasets' pixels, scaled to [-1, 1] here
        reals, conditional = reals.to(self.dtype), self.num_classes is not None  # float32 images; `*-true` casts the nets
        seen_reals = []
        for i in range(self.n_critic):
            mix = None if draws.mix is None else draws.mix[i]
            real_logits, fake_logits, penalties = self.discriminator_step(
                reals[i], labels[i] if conditional else None, d_opt, draws.d_noise[i].to(self.dtype), mix, draws.d_seen(i),
                draws.penalized[i] if draws.penalized else True)
            seen_reals.append(real_logits)
        self.augment.adapt(seen_reals)
        g_labels = (labels[-1] if conditional else None) if pairs else draws.g_labels  # pairs: the fakes made for G's reals
        g_loss = self.generator_step(draws.g_noise.to(self.dtype), g_labels, g_opt, draws.g_seen,
                                     reals[-1] if pairs else None, draws.g_real_seen)
        if self.generator_ema is not None:
            self.update_ema(self.execution.draws.batch)  # the global batch, whatever the processes
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
                           mix: torch.Tensor | None = None, seen: tuple = (None, None), penalized: bool = True,
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Every term of D's step, as stylegan2-ada's loss.py gathers a phase's. Returns D's logits
        on the real and fake batch, each as computed before the update that used it (what Keras's
        `train_on_batch` reports), and the penalties' last values (`loss/r1`, `loss/r2`,
        `loss/gp`). R1 and R2 are taken on the images before augmentation (as ADA takes R1: the
        reals, and the fakes D was shown); R1 joins the real term, R2 and the gradient penalty
        (which needs both batches, on the pair as D saw it) the fake term or the joint loss.
        `penalized`: whether this D step adds the penalties (lazy regularisation weights them by
        `penalty_every`). `z`: the fakes' noise; `mix`: the penalty's mixing weights; `seen`: the
        augmentation draws of the reals and of the fakes. D's own forward passes go through its
        process replica."""
        loss_fn = self.loss
        weight = loss_fn.penalty_every if penalized else 0  # lazy: N times the penalty on every N-th D step
        r1, r2, gp = (weight * g for g in (loss_fn.r1_gamma, loss_fn.r2_gamma, loss_fn.gp_weight))
        fake = self.sample(z, labels, training=self.fakes_mode == "train")
        _, discriminator = self.execution.networks(self)
        if r1:
            real = real.detach().requires_grad_(True)
        if r2:
            fake = fake.detach().requires_grad_(True)
        real_seen, fake_seen = self.augment(real, seen[0]), self.augment(fake, seen[1])
        real_logits, real_classes = self.judge(discriminator, real_seen, labels)
        real_terms = self.class_term(real_classes, labels, logged=True)
        real_terms = real_terms + (self.penalty(self.last_r1, r1 / 2, real_logits, real) if r1 else 0.0)
        if loss_fn.pairs:
            fake_logits, fake_classes = self.judge(discriminator, fake_seen, labels)
            loss = loss_fn.d(real_logits, fake_logits) + real_terms
        else:
            real_loss = loss_fn.d_real(real_logits) + real_terms
            if self.d_update == "two_steps":
                self.step(d_opt, real_loss)
                fake_logits, fake_classes = self.judge(discriminator, fake_seen, labels)
                loss = loss_fn.d_fake(fake_logits)
            else:
                fake_logits, fake_classes = self.judge(discriminator, fake_seen, labels)
                loss = real_loss + loss_fn.d_fake(fake_logits)
        loss = loss + self.class_term(fake_classes, labels)
        if r2:
            loss = loss + self.penalty(self.last_r2, r2 / 2, fake_logits, fake)
        if gp:
            value = gradient_penalty(self.critic, real_seen, fake_seen, labels, mix, self.execution.penalty_scale(self.device))
            self.last_gp.copy_(value.detach())
            loss = loss + gp * value
        self.step(d_opt, loss)
        scalars = {f"loss/{name}": getattr(self, f"last_{name}").clone() for name in self.logged_penalties}
        if self.auxiliary:
            scalars.update({"loss/class": self.last_class.clone(), "train/class_acc": self.last_class_acc.clone()})
        return real_logits.detach(), fake_logits.detach(), scalars

    def judge(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor | None):
        """D's logits on `images` and, with AC-GAN's auxiliary classifier, its class logits (else None),
        in float32 when D computed them in half precision (autocast), so every loss is float32."""
        out = at_least_float32(net(images, labels))
        return (out[:, 0], out[:, 1:]) if self.auxiliary else (out, None)

    def critic(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The bare D's logits alone (what the gradient penalty differentiates)."""
        return self.judge(self.discriminator, images, labels)[0]

    def class_term(self, class_logits: torch.Tensor | None, labels: torch.Tensor | None, logged: bool = False):
        """AC-GAN's weighted cross-entropy of D's class logits against `labels` (0 without its
        classifier); `logged`: kept, with the accuracy, for the log (D's on the reals)."""
        if class_logits is None:
            return 0.0
        value = F.cross_entropy(class_logits, labels)
        if logged:
            self.last_class.copy_(value.detach())
            self.last_class_acc.copy_((class_logits.detach().argmax(1) == labels).float().mean())
        return self.loss.class_weight * value

    def penalty(self, last: torch.Tensor, weight: float, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """`weight` times the zero-centred gradient penalty of D's `logits` on `images` (R1, R2),
        its value kept in `last` for the log."""
        value = r1_penalty(logits, images, self.execution.penalty_scale(self.device))
        last.copy_(value.detach())
        return weight * value

    def generator_step(self, z: torch.Tensor, labels: torch.Tensor | None, g_opt, seen=None,
                       real: torch.Tensor | None = None, real_seen=None) -> torch.Tensor:
        """G's step on noise `z` and labels (conditional), D seeing the fakes through the
        augmentation (draws `seen`); a pairwise loss also shows D the `real` batch (draws
        `real_seen`). G runs through its process replica; D is the bare, frozen network: nothing
        of D's is reduced or stepped here."""
        generator, _ = self.execution.networks(self)
        with frozen(self.discriminator):
            fake_logits, fake_classes = self.judge(self.discriminator, self.augment(generator(z, labels), seen), labels)
            if self.loss.pairs:
                loss = self.loss.g(fake_logits, self.judge(self.discriminator, self.augment(real, real_seen), labels)[0])
            else:
                loss = self.loss.g(fake_logits)
            loss = loss + self.class_term(fake_classes, labels)  # AC-GAN: G's fakes classified as their labels
            self.step(g_opt, loss)
        return loss.detach()

    def ema_beta(self, batch: int) -> torch.Tensor:
        """StyleGAN's decay of the average for the update after n_averaged iterations of `batch`
        images: 0.5 ** (batch / half-life), the half-life `ema_kimg` thousand images, or with
        `ema_rampup` at most that share of the images seen so far. On the device, no host sync."""
        seen = self.generator_ema.n_averaged.double() * batch
        half_life = torch.full_like(seen, self.ema_kimg * 1000)
        if self.ema_rampup is not None:
            half_life = torch.minimum(half_life, seen * self.ema_rampup)
        return 0.5 ** (batch / half_life.clamp(min=1e-8))

    @torch.no_grad()
    def update_ema(self, batch: int = 1) -> None:
        """One step of the average of G's weights; `batch`: the images of this iteration's global batch."""
        ema = self.generator_ema
        averaged, live = [p.detach() for p in ema.module.parameters()], [p.detach() for p in self.generator.parameters()]
        if self.ema_kimg is not None:  # the average starts as G (AveragedModel copies it) and follows StyleGAN's decay
            beta = self.ema_beta(batch).float()
            for a, p in zip(averaged, live):
                a.lerp_(p, 1 - beta)
            ema.n_averaged += 1
        elif self._ema_started:  # what update_parameters does once it has started, without its host-side check
            ema.multi_avg_fn(averaged, live, ema.n_averaged)
            ema.n_averaged += 1
        else:  # the first update copies G (a fresh average) or continues a resumed one
            ema.update_parameters(self.generator)
            self._ema_started = True
        for averaged_buffer, live_buffer in zip(ema.module.buffers(), self.generator.buffers()):
            averaged_buffer.copy_(live_buffer)

    def step(self, opt, loss: torch.Tensor) -> None:
        """One backward pass and optimizer step, as this fit executes them (gan/engine/execution.py)."""
        self.execution.step(self, opt, loss)
