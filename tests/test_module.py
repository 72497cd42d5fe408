"""The update itself: what each step may change, and how steps are counted."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from gan.data import to_unit
from gan.losses import NonSaturating, bce
from gan.module import GAN, LOGGED_METRICS, d_statistics
from tests.helpers import make_cfg


class FixedBatches(pl.LightningDataModule):
    """Random 'images' in [-1, 1] and labels, in chunks of one iteration as the module expects:
    [(images (n_critic, batch, 1, 28, 28), labels (n_critic, batch))]."""

    def __init__(self, n_critic: int = 1, batch: int = 8):
        super().__init__()
        self.shape = (n_critic, batch, 1, 28, 28)
        self.batch_size, self.seed = batch, 0  # what the module's noise draws read (gan/engine/draws.py)

    def train_dataloader(self):
        images, labels = torch.rand(100, *self.shape) * 2 - 1, torch.randint(10, (100, *self.shape[:2]))
        return torch.utils.data.DataLoader([[pair] for pair in zip(images, labels)], batch_size=None)


def build(*overrides: str) -> GAN:
    cfg = make_cfg("model.generator.hidden_dims=[32,64]", "model.discriminator.hidden_dims=[64,32]", *overrides)
    torch.manual_seed(0)
    return GAN.from_config(cfg)


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
    fitted.discriminator_step(torch.rand(8, 1, 28, 28) * 2 - 1, None, d_opt, torch.randn(8, 100))
    assert changed(g_before, fitted.generator) == set()  # no weight and no BatchNorm statistic moved
    assert changed(d_before, fitted.discriminator) == set(d_before)  # every D weight and bias moved
    assert fitted.generator.training  # G is back in training mode for its own step


def test_fakes_in_train_mode_do_update_g_batchnorm_statistics():
    module = build("gan.fakes_mode=train")
    attach(module)
    g_before = snapshot(module.generator)
    module.discriminator_step(torch.rand(8, 1, 28, 28) * 2 - 1, None, module.optimizers()[1], torch.randn(8, 100))
    moved = changed(g_before, module.generator)
    assert moved and all("running" in k or "num_batches" in k for k in moved)


def test_g_step_changes_only_g_and_leaves_d_without_gradients(fitted):
    g_before, d_before = snapshot(fitted.generator), snapshot(fitted.discriminator)
    g_opt, d_opt = fitted.optimizers()
    d_opt.zero_grad(set_to_none=True)
    fitted.generator_step(torch.randn(8, 100), None, g_opt)
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
    module = build("gan.n_critic=3")
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FixedBatches(n_critic=3))
    d_opt = module.optimizers()[1].optimizer
    assert trainer.global_step == 4
    assert d_opt.state[next(iter(d_opt.state))]["step"].item() == 4 * 3 * 2


def fixed_noise(module: GAN, n: int = 8) -> torch.Tensor:
    return torch.randn(n, module.latent_dim)


@pytest.mark.parametrize("d_update", ["two_steps", "joint"])
def test_d_update_uses_reals_labelled_1_and_inference_mode_fakes_labelled_0(d_update, monkeypatch):
    module = build(f"gan.d_update={d_update}")
    attach(module)
    z, real = fixed_noise(module), torch.rand(8, 1, 28, 28) * 2 - 1
    losses = []
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))  # record, don't step
    module.generator.train()
    d = module.discriminator
    with torch.no_grad():
        real_loss = bce(d(real), 1.0)
        fake_loss = bce(d(copy.deepcopy(module.generator).eval()(z)), 0.0)
        train_mode_fake_loss = bce(d(copy.deepcopy(module.generator).train()(z)), 0.0)
    assert not torch.allclose(fake_loss, train_mode_fake_loss)  # so the check below can tell the modes apart
    module.discriminator_step(real, None, module.optimizers()[1], z)
    expected = [real_loss, fake_loss] if d_update == "two_steps" else [real_loss + fake_loss]
    assert len(losses) == len(expected) and all(torch.allclose(a, b) for a, b in zip(losses, expected))


def test_g_update_is_non_saturating_through_d_with_g_in_training_mode(monkeypatch):
    module = build()
    attach(module)
    z = fixed_noise(module)
    with torch.no_grad():
        expected = bce(module.discriminator(copy.deepcopy(module.generator).train()(z)), 1.0)
        eval_mode = bce(module.discriminator(copy.deepcopy(module.generator).eval()(z)), 1.0)
    assert not torch.allclose(expected, eval_mode)
    assert torch.allclose(module.generator_step(z, None, module.optimizers()[0]), expected)


def test_d_statistics_are_what_the_keras_example_prints():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([-3.0, -0.5, 0.1, -2.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    stats = {k: v.item() for k, v in d_statistics(real, fake, NonSaturating()).items()}
    real_loss = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2
    fake_loss = -sum(math.log(1 - sig(x)) for x in (-3.0, -0.5, 0.1, -2.0)) / 4
    assert stats["loss/d"] == pytest.approx((real_loss + fake_loss) / 2)
    assert stats["train/d_acc"] == pytest.approx((1 / 2 + 3 / 4) / 2)  # D(x) > 0.5 counts for reals, < 0.5 for fakes
    assert stats["train/d_real"] == pytest.approx((sig(2.0) + sig(-1.0)) / 2)
    assert stats["train/d_fake"] == pytest.approx(sum(sig(x) for x in (-3.0, -0.5, 0.1, -2.0)) / 4)


def test_logged_scalars_are_the_statistics_of_the_step():
    module = build()
    trainer = attach(module, max_steps=3)
    metrics = trainer.callback_metrics
    assert set(metrics) >= {*LOGGED_METRICS, "train/lr_g", "train/lr_d"}
    assert metrics["train/lr_g"] == pytest.approx(2e-4) and metrics["train/lr_d"] == pytest.approx(2e-4)
    assert 0 < metrics["train/d_real"] < 1 and 0 < metrics["train/d_fake"] < 1


class Trajectory(pl.Callback):
    """G's weights after every iteration."""

    def __init__(self):
        self.weights = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.weights.append({k: v.detach().clone() for k, v in pl_module.generator.named_parameters()})


def test_ema_weights_follow_the_closed_form_and_copy_the_batchnorm_buffers():
    decay, k = 0.9, 4
    module = build(f"gan.ema_decay={decay}", "gan.fakes_mode=train")
    trajectory = Trajectory()
    trainer = pl.Trainer(accelerator="cpu", max_steps=k, logger=False, enable_checkpointing=False, log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[trajectory])
    trainer.fit(module, datamodule=FixedBatches())
    averaged = dict(module.generator_ema.module.named_parameters())
    for name, live in module.generator.named_parameters():
        p = [w[name] for w in trajectory.weights]  # p[0] is G after update 1: the average starts there
        expected = decay ** (k - 1) * p[0] + sum((1 - decay) * decay ** (k - 1 - i) * p[i] for i in range(1, k))
        assert torch.allclose(averaged[name], expected, atol=1e-6)
        assert not torch.allclose(averaged[name], live)
    buffers = dict(module.generator_ema.module.named_buffers())
    assert any("running_mean" in name for name in buffers)
    for name, live in module.generator.named_buffers():
        assert torch.equal(buffers[name], live)  # running statistics copied, not averaged
    assert module.eval_generator is module.generator_ema.module
    assert not any(p.requires_grad for p in module.generator_ema.parameters())


@pytest.mark.parametrize("d_update", ["joint", "two_steps"])
def test_gradient_penalty_joins_the_d_step_that_sees_the_fakes_with_its_weight(d_update, monkeypatch):
    module = build("loss=wgan_gp", f"gan.d_update={d_update}")
    attach(module)
    z, real = fixed_noise(module), torch.rand(8, 1, 28, 28) * 2 - 1
    losses = []
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))
    monkeypatch.setattr("gan.module.gradient_penalty", lambda d, r, f, y, mix, scale: torch.tensor(0.25))
    with torch.no_grad():
        real_term, fake_term = -module.discriminator(real).mean(), module.discriminator(module.sample(z)).mean() + 10 * 0.25
    *_, penalties = module.discriminator_step(real, None, module.optimizers()[1], z)
    expected = [real_term + fake_term] if d_update == "joint" else [real_term, fake_term]
    assert len(losses) == len(expected) and all(torch.allclose(a, b) for a, b in zip(losses, expected))
    assert penalties == {"loss/gp": 0.25}


def test_r1_penalty_joins_the_real_term(monkeypatch):
    module = build("loss.r1_gamma=4")
    attach(module)
    losses = []
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    *_, penalties = module.discriminator_step(real, None, module.optimizers()[1], fixed_noise(module))
    with torch.no_grad():
        plain = bce(module.discriminator(real), 1.0)
    assert set(penalties) == {"loss/r1"} and penalties["loss/r1"] > 0
    assert torch.allclose(losses[0], plain + 4 / 2 * penalties["loss/r1"])


def test_conditional_steps_give_d_the_real_labels_and_g_random_ones(monkeypatch):
    module = build("model.conditional=true")
    attach(module)
    seen = []
    forward = module.discriminator.forward
    monkeypatch.setattr(module.discriminator, "forward", lambda x, labels=None: seen.append(labels) or forward(x, labels))
    labels = torch.arange(8)
    module.discriminator_step(torch.rand(8, 1, 28, 28) * 2 - 1, labels, module.optimizers()[1], fixed_noise(module))
    assert len(seen) == 2 and all(torch.equal(y, labels) for y in seen)  # reals, and the fakes made for them
    draws = module.execution.draws(0)  # G's step draws its own labels, uniformly over all classes
    assert draws.g_labels.shape == (8,) and len(torch.cat([module.execution.draws(t).g_labels for t in range(20)]).unique()) == 10
    module.generator_step(draws.g_noise, draws.g_labels, module.optimizers()[0])
    assert torch.equal(seen[-1], draws.g_labels)


def test_rpgan_takes_one_d_step_on_the_pairs_with_r1_on_the_reals_and_r2_on_the_fakes_d_saw(monkeypatch):
    module = build("loss=rpgan", "loss.r1_gamma=2")
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FixedBatches(n_critic=2))  # one D batch and G's own
    seen, losses = [], []
    forward = module.discriminator.forward
    monkeypatch.setattr(module.discriminator, "forward", lambda x, labels=None: seen.append(x) or forward(x, labels))
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))
    real, z = torch.rand(8, 1, 28, 28) * 2 - 1, fixed_noise(module)
    real_logits, fake_logits, penalties = module.discriminator_step(real, None, module.optimizers()[1], z)
    assert len(losses) == 1 and set(penalties) == {"loss/r1", "loss/r2"}
    fake = module.sample(z)
    assert torch.equal(seen[1], fake)  # R2 is taken on exactly the fakes D was shown
    for images, name in ((real, "loss/r1"), (fake, "loss/r2")):
        images = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(forward(images).sum(), images)
        assert torch.allclose(penalties[name], grad.flatten(1).pow(2).sum(1).mean(), rtol=1e-4)
    pairs = torch.nn.functional.softplus(fake_logits - real_logits).mean()
    expected = pairs + 2 / 2 * (penalties["loss/r1"] + penalties["loss/r2"])
    assert torch.allclose(losses[0], expected, rtol=1e-5)


def test_rpgan_g_step_shows_d_a_real_batch_of_its_own(monkeypatch):
    module = build("loss=rpgan")
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FixedBatches(n_critic=2))
    seen = []
    forward = module.discriminator.forward
    monkeypatch.setattr(module.discriminator, "forward", lambda x, labels=None: seen.append(x) or forward(x, labels))
    real, z = torch.rand(8, 1, 28, 28) * 2 - 1, fixed_noise(module)
    with torch.no_grad():  # before G's step changes G (G in training mode: batch statistics, as its step)
        expected = torch.nn.functional.softplus(forward(real) - forward(module.sample(z, training=True))).mean()
    loss = module.generator_step(z, None, module.optimizers()[0], real=real)
    assert len(seen) == 2 and torch.equal(seen[1], real)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_lazy_regularisation_weights_the_penalty_by_its_interval_on_the_steps_it_runs(monkeypatch):
    module = build("loss.r1_gamma=4", "loss.penalty_every=3")
    attach(module)
    assert [module.execution.draws(t).penalized for t in range(4)] == [(True,), (False,), (False,), (True,)]
    losses = []
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    *_, on = module.discriminator_step(real, None, module.optimizers()[1], fixed_noise(module), penalized=True)
    *_, off = module.discriminator_step(real, None, module.optimizers()[1], fixed_noise(module), penalized=False)
    with torch.no_grad():
        plain = bce(module.discriminator(real), 1.0)
    assert torch.allclose(losses[0], plain + 3 * 4 / 2 * on["loss/r1"]) and torch.allclose(losses[2], plain)
    assert torch.equal(off["loss/r1"], on["loss/r1"])  # the log keeps the last value on the steps it skips


def test_ema_warm_up_follows_stylegan_decay_per_step():
    kimg, rampup, batch = 0.1, 0.05, 32
    module = build(f"gan.ema_kimg={kimg}", f"gan.ema_rampup={rampup}")
    ema = module.generator_ema
    start = [p.detach().clone() for p in ema.module.parameters()]
    assert all(torch.equal(a, p) for a, p in zip(start, module.generator.parameters()))  # the average starts as G
    expected = [p.clone() for p in start]
    for k in range(6):
        with torch.no_grad():
            for p in module.generator.parameters():
                p.add_(0.1 * torch.randn_like(p))
        # StyleGAN2-ADA training_loop.py: ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup); beta = 0.5 ** (batch / ema_nimg)
        half_life = min(kimg * 1000, k * batch * rampup)
        beta = 0.5 ** (batch / max(half_life, 1e-8))
        assert module.ema_beta(batch).item() == pytest.approx(beta, rel=1e-9, abs=1e-300)
        module.update_ema(batch)
        expected = [p.detach() + beta * (e - p.detach()) for e, p in zip(expected, module.generator.parameters())]
        assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(ema.module.parameters(), expected))
    assert beta > 0  # past the first update the average keeps a share of its past


def test_acgan_d_classifies_and_the_g_loss_includes_the_class_term(monkeypatch):
    module = build("model.conditional=true", "model.conditioning=auxiliary", "loss.class_weight=0.7")
    attach(module)
    images, labels = torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8) % 10
    assert module.auxiliary and module.discriminator(images, labels).shape == (8, 11)  # the logit, then 10 class logits
    losses = []
    monkeypatch.setattr(module, "step", lambda opt, loss: losses.append(loss.detach()))
    z = fixed_noise(module)
    with torch.no_grad():  # what G's step will see (G in training mode, D's weights before any step)
        out = module.discriminator(module.sample(z, labels, training=True), labels)
    module.generator_step(z, labels, module.optimizers()[0])
    expected = bce(out[:, 0], 1.0) + 0.7 * torch.nn.functional.cross_entropy(out[:, 1:], labels)
    assert torch.allclose(losses[0], expected, rtol=1e-5)
    _, _, scalars = module.discriminator_step(images, labels, module.optimizers()[1], z)
    with torch.no_grad():
        classes = module.discriminator(images, labels)[:, 1:]
    assert torch.allclose(scalars["loss/class"], torch.nn.functional.cross_entropy(classes, labels), rtol=1e-5)
    assert scalars["train/class_acc"] == (classes.argmax(1) == labels).float().mean()
    real_loss = bce(module.discriminator(images, labels)[:, 0], 1.0) + 0.7 * scalars["loss/class"]
    assert torch.allclose(losses[1], real_loss, rtol=1e-5)  # two_steps: the real step carries the reals' class term


def test_acgan_d_learns_to_classify_real_digits_within_a_few_hundred_iterations(mnist_root):
    cfg = make_cfg("trainer=cpu", "model.conditional=true", "model.conditioning=auxiliary", run_dir="/nonexistent")
    torch.manual_seed(0)
    module = GAN.from_config(cfg)
    trainer = pl.Trainer(accelerator="cpu", max_steps=300, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    datamodule = instantiate(cfg.data, iterations_per_step=25)
    trainer.fit(module, datamodule=datamodule)
    images, labels = datamodule.split(train=False)
    with torch.no_grad():
        classes = module.discriminator(to_unit(images[:2000]), labels[:2000])[:, 1:]
    accuracy = (classes.argmax(1) == labels[:2000]).float().mean().item()
    assert accuracy > 0.5, accuracy  # chance: 0.1
