"""The `schedule` node (gan/schedules.py): R3GAN's cosine and SNGAN's linear decay, applied before
each iteration to the learning rates, Adam's beta2, the penalties, the EMA half-life and ADA's p."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from gan.errors import UserError
from gan.module import GAN
from gan.schedules import Schedule, Scheduled
from gan.training.schema import validate
from tests.helpers import SMALL_R3GAN, make_cfg


def r3gan_cosine(cur_nimg, base_value, total_nimg, final_value):
    """brownvc/R3GAN training_loop.cosine_decay_with_warmup without its warm-up and hold."""
    decay = 0.5 * (1 + math.cos(math.pi * cur_nimg / total_nimg))
    return final_value if cur_nimg > total_nimg else base_value + (1 - decay) * (final_value - base_value)


@pytest.mark.parametrize("images", [0, 1, 5000, 10_000, 17_500, 20_000, 50_000])
def test_cosine_and_linear_follow_their_formulas(images):
    starts = {"lr": 2e-4, "r1_gamma": 0.05}
    cosine = Scheduled(Schedule(kimg=20, lr=5e-5, r1_gamma=0.005), starts, 20_000, (2e-4, 2e-4))
    values = cosine.values(images)
    assert values["lr"] == pytest.approx(r3gan_cosine(images, 2e-4, 20_000, 5e-5), rel=1e-12)
    assert values["r1_gamma"] == pytest.approx(r3gan_cosine(images, 0.05, 20_000, 0.005), rel=1e-12)
    linear = Scheduled(Schedule(shape="linear", lr=0.0), starts, 20_000, (2e-4, 2e-4))
    assert linear.values(images)["lr"] == pytest.approx(2e-4 * max(0.0, 1 - images / 20_000), abs=1e-15)


def train(*overrides: str, steps: int):
    cfg = make_cfg("trainer=cpu", *overrides, run_dir="/nonexistent")
    torch.manual_seed(0)
    module = GAN.from_config(cfg)
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=instantiate(cfg.data, iterations_per_step=7, batches_per_step=GAN.real_batches(cfg)))
    return module, cfg


def test_each_value_is_set_before_each_iteration_from_the_images_seen_before_it(mnist_root):
    module, cfg = train(*SMALL_R3GAN, "augment=ada", "augment.target=null", "schedule.kimg=1", "schedule.lr=1e-5",
                        "schedule.beta2=0.99", "schedule.r1_gamma=0.005", "schedule.r2_gamma=0.001",
                        "schedule.ema_kimg=0.3", "schedule.aug_p=0.5", "optimizer.discriminator.lr=4e-4", steps=20)
    # the last iteration (index 19) ran with the values after 19 x 32 images of the 1,000
    expected = module.schedule.values(19 * 32)
    done = (1 - math.cos(math.pi * 19 * 32 / 1000)) / 2
    assert expected["lr"] == pytest.approx(2e-4 + done * (1e-5 - 2e-4))
    g_opt, d_opt = (opt.optimizer for opt in module.optimizers())
    assert g_opt.param_groups[0]["lr"] == pytest.approx(expected["lr"])
    assert d_opt.param_groups[0]["lr"] == pytest.approx(2 * expected["lr"])  # TTUR: D's rate keeps its ratio
    assert g_opt.param_groups[0]["betas"] == (cfg.optimizer.beta1, pytest.approx(expected["beta2"]))
    assert module.loss.r1_gamma == pytest.approx(expected["r1_gamma"])
    assert module.loss.r2_gamma == pytest.approx(expected["r2_gamma"])
    assert module.ema_kimg == pytest.approx(expected["ema_kimg"])
    assert float(module.augment.p) == pytest.approx(expected["aug_p"])
    assert 0.05 > expected["r1_gamma"] > 0.005 and 0 < expected["aug_p"] < 0.5  # mid-way: none at its start or end


def test_without_a_schedule_nothing_moves(mnist_root):
    module, cfg = train(steps=10)
    assert module.schedule is None and module.optimizers()[0].optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("overrides, hint", [
    (["schedule.aug_p=0.5"], "moves `augment.p`, which this config does not set to a number"),
    (["augment=ada", "schedule.aug_p=0.5"], "which augment.target steers itself"),
    (["experiment=r3gan_cifar10", "augment=none"], "moves `augment.p`, which this config does not set to a number"),
    (["augment=none", "+augment.p=0.3"], "`augment.p` is not an argument of gan.augment.NoAugment"),
    (["schedule.ema_kimg=5"], "moves `gan.ema_kimg`"),
    (["schedule.shape=step"], "input should be 'cosine' or 'linear'"),
    (["+schedule.lrr=1"], "`schedule.lrr` is not a known key"),
])
def test_a_schedule_that_cannot_run_is_one_paragraph(overrides, hint):
    with pytest.raises(UserError) as err:
        validate(make_cfg(*overrides))
    assert hint in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, built", [(["augment=ada_scheduled", "schedule.aug_p=0.4"], "ADA"),
                                              (["experiment=r3gan_cifar10", "augment=none", "schedule.aug_p=null"], "NoAugment")])
def test_the_recipe_swaps_its_augmentation_as_one_option(overrides, built):
    """R3GAN's fixed-p ADA is an option of its own, so `augment=none` leaves no ADA key behind."""
    cfg = make_cfg(*overrides)
    validate(cfg)
    assert type(instantiate(cfg.augment)).__name__ == built
