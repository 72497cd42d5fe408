"""The update itself: what each step may change, and how steps are counted."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from gan.module import GAN
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


def test_d_loss_and_accuracy_are_the_seed_statistics():
    module = build()
    trainer = attach(module, max_steps=3)
    metrics = trainer.callback_metrics
    assert set(metrics) >= {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_acc", "train/lr_g", "train/lr_d"}
    assert 0 <= metrics["train/d_acc"] <= 1 and 0 < metrics["train/d_real"] < 1
    assert metrics["train/lr_g"] == pytest.approx(2e-4)
