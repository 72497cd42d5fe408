"""The update itself: what each step may change, and how steps are counted."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from gan.module import GAN, bce, d_statistics
from tests.conftest import make_cfg


class FixedBatches(pl.LightningDataModule):
    """Random 'images' in [-1, 1], shaped as the module expects: (n_critic, batch, 1, 28, 28)."""

    def __init__(self, n_critic: int = 1, batch: int = 8):
        super().__init__()
        self.shape = (n_critic, batch, 1, 28, 28)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.rand(100, *self.shape) * 2 - 1, batch_size=None)


def build(*overrides: str) -> GAN:
    cfg = make_cfg("model.generator.hidden_dims=[32,64]", "model.discriminator.hidden_dims=[64,32]", *overrides)
    torch.manual_seed(0)
    return GAN(
        instantiate(cfg.model.generator), instantiate(cfg.model.discriminator),
        instantiate(cfg.optimizer.generator), instantiate(cfg.optimizer.discriminator),
        latent_dim=cfg.model.latent_dim, d_update=cfg.gan.d_update, fakes_mode=cfg.gan.fakes_mode,
    )


def attach(module: GAN, max_steps: int = 1) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False, log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FixedBatches())
    return trainer


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before: dict, net: nn.Module) -> set[str]:
    return {k for k, v in net.state_dict().items() if not torch.equal(before[k], v)}


@pytest.fixture
def fitted() -> GAN:
    module = build()
    attach(module)  # sets up trainer, optimizers and one iteration
    return module


def test_d_step_changes_only_d_and_leaves_g_batchnorm_alone(fitted):
    g_before, d_before = snapshot(fitted.generator), snapshot(fitted.discriminator)
    g_opt, d_opt = fitted.optimizers()
    fitted.generator.train()
    fitted.discriminator_step(torch.rand(8, 1, 28, 28) * 2 - 1, d_opt)
    assert changed(g_before, fitted.generator) == set()  # no weight and no BatchNorm statistic moved
    assert changed(d_before, fitted.discriminator) == set(d_before)  # every D weight and bias moved
    assert fitted.generator.training  # G is back in training mode for its own step


def test_fakes_in_train_mode_do_update_g_batchnorm_statistics():
    module = build("gan.fakes_mode=train")
    attach(module)
    g_before = snapshot(module.generator)
    module.discriminator_step(torch.rand(8, 1, 28, 28) * 2 - 1, module.optimizers()[1])
    moved = changed(g_before, module.generator)
    assert moved and all("running" in k or "num_batches" in k for k in moved)


def test_g_step_changes_only_g_and_leaves_d_without_gradients(fitted):
    g_before, d_before = snapshot(fitted.generator), snapshot(fitted.discriminator)
    g_opt, d_opt = fitted.optimizers()
    d_opt.zero_grad(set_to_none=True)
    fitted.generator_step(8, g_opt)
    assert changed(d_before, fitted.discriminator) == set()
    assert all(p.grad is None for p in fitted.discriminator.parameters())
    assert all(p.requires_grad for p in fitted.discriminator.parameters())  # unfrozen afterwards
    weights = {k for k in g_before if "running" not in k and "num_batches" not in k}
    assert weights <= changed(g_before, fitted.generator)


@pytest.mark.parametrize("d_update, d_steps_per_iteration", [("two_steps", 2), ("joint", 1)])
def test_global_step_counts_gan_iterations(d_update, d_steps_per_iteration):
    module = build(f"gan.d_update={d_update}")
    trainer = attach(module, max_steps=7)
    g_opt, d_opt = (opt.optimizer for opt in module.optimizers())
    assert trainer.global_step == 7
    assert g_opt.state[next(iter(g_opt.state))]["step"].item() == 7
    assert d_opt.state[next(iter(d_opt.state))]["step"].item() == 7 * d_steps_per_iteration


def test_n_critic_takes_one_d_step_per_real_batch():
    module = build()
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FixedBatches(n_critic=3))
    d_opt = module.optimizers()[1].optimizer
    assert trainer.global_step == 4
    assert d_opt.state[next(iter(d_opt.state))]["step"].item() == 4 * 3 * 2


def fixed_noise(module: GAN, monkeypatch, n: int = 8) -> torch.Tensor:
    z = torch.randn(n, module.latent_dim)
    monkeypatch.setattr(module, "noise", lambda size: z[:size])
    return z


@pytest.mark.parametrize("d_update", ["two_steps", "joint"])
def test_d_update_uses_reals_labelled_1_and_inference_mode_fakes_labelled_0(d_update, monkeypatch):
    module = build(f"gan.d_update={d_update}")
    attach(module)
    z, real = fixed_noise(module, monkeypatch), torch.rand(8, 1, 28, 28) * 2 - 1
    losses = []
    monkeypatch.setattr(module, "_d_step", lambda opt, loss: losses.append(loss.detach()))  # record, don't step
    module.generator.train()
    d = module.discriminator
    with torch.no_grad():
        real_loss = bce(d(real), 1.0)
        fake_loss = bce(d(copy.deepcopy(module.generator).eval()(z)), 0.0)
        train_mode_fake_loss = bce(d(copy.deepcopy(module.generator).train()(z)), 0.0)
    assert not torch.allclose(fake_loss, train_mode_fake_loss)  # so the check below can tell the modes apart
    module.discriminator_step(real, module.optimizers()[1])
    expected = [real_loss, fake_loss] if d_update == "two_steps" else [real_loss + fake_loss]
    assert len(losses) == len(expected) and all(torch.allclose(a, b) for a, b in zip(losses, expected))


def test_g_update_is_non_saturating_through_d_with_g_in_training_mode(monkeypatch):
    module = build()
    attach(module)
    z = fixed_noise(module, monkeypatch)
    with torch.no_grad():
        expected = bce(module.discriminator(copy.deepcopy(module.generator).train()(z)), 1.0)
        eval_mode = bce(module.discriminator(copy.deepcopy(module.generator).eval()(z)), 1.0)
    assert not torch.allclose(expected, eval_mode)
    assert torch.allclose(module.generator_step(8, module.optimizers()[0]), expected)


def test_d_statistics_are_the_seed_numbers():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([-3.0, -0.5, 0.1, -2.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    stats = {k: v.item() for k, v in d_statistics(real, fake).items()}
    real_loss = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2
    fake_loss = -sum(math.log(1 - sig(x)) for x in (-3.0, -0.5, 0.1, -2.0)) / 4
    assert stats["train/d_loss"] == pytest.approx((real_loss + fake_loss) / 2)
    assert stats["train/d_acc"] == pytest.approx((1 / 2 + 3 / 4) / 2)  # D(x) > 0.5 counts for reals, < 0.5 for fakes
    assert stats["train/d_real"] == pytest.approx((sig(2.0) + sig(-1.0)) / 2)
    assert stats["train/d_fake"] == pytest.approx(sum(sig(x) for x in (-3.0, -0.5, 0.1, -2.0)) / 4)


def test_logged_scalars_are_the_statistics_of_the_step():
    module = build()
    trainer = attach(module, max_steps=3)
    metrics = trainer.callback_metrics
    assert set(metrics) >= {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_acc", "train/lr_g", "train/lr_d"}
    assert metrics["train/lr_g"] == pytest.approx(2e-4) and metrics["train/lr_d"] == pytest.approx(2e-4)
    assert 0 < metrics["train/d_real"] < 1 and 0 < metrics["train/d_fake"] < 1
