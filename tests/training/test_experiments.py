"""The model zoo end to end: every experiment trains a few iterations on real MNIST; conditional
runs draw one grid row per class and generate a chosen class; EMA runs sample from the average."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan.errors import UserError
from gan.generate import Args, write
from gan.module import LOGGED_METRICS
from gan.run.checkpoints.files import load_generator
from gan.samples import generate
from gan.training.fit import fit
from tests.helpers import CONF, make_cfg, optimizer_steps, quick, write_idx

EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
SHORT = ("trainer.max_steps=6", "sample_every=3", "callbacks.checkpoint.every_n_train_steps=3")


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if not any(d in e for d in ("fashion", "cifar", "folder"))])
# (the others train on their own data: below, and in tests/data/test_folder.py)
def test_every_experiment_trains_on_mnist(experiment, mnist_root, tmp_path):
    metrics = fit(make_cfg(f"experiment={experiment}", *quick(*SHORT), run_dir=tmp_path))
    assert all(math.isfinite(metrics[tag]) for tag in LOGGED_METRICS)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6
    cfg = make_cfg(f"experiment={experiment}")
    d_steps_per_iteration = cfg.gan.n_critic * (2 if cfg.gan.d_update == "two_steps" else 1)
    assert optimizer_steps(tmp_path / "checkpoints" / "last.ckpt") == [6, 6 * d_steps_per_iteration]
    assert sorted(p.name for p in (tmp_path / "images").glob("*.png")) == ["000003.png", "000006.png"]


def test_dcgan_fashion_mnist_trains_on_fashion_mnist_files(tmp_path):  # dcgan_cifar10: tests/data/test_folder.py
    for split, n in (("train", 400), ("test", 50)):
        write_idx(tmp_path / "data" / "FashionMNIST" / "raw", n, split)
    metrics = fit(make_cfg("experiment=dcgan_fashion_mnist", *quick(*SHORT, f"data.root={tmp_path / 'data'}"),
                             run_dir=tmp_path / "run"))
    assert all(math.isfinite(metrics[tag]) for tag in LOGGED_METRICS)
    config = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["config"]
    assert config["data"]["_target_"].endswith("FashionMNISTDataModule")
    assert config["model"]["generator"]["_target_"].endswith("DCGANGenerator")


@pytest.fixture(scope="module")
def conditional_run(mnist_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cgan")
    fit(make_cfg("experiment=cgan_mnist", *quick(*SHORT, "gan.ema_decay=0.9"), run_dir=run_dir))
    return run_dir


def test_conditional_grid_has_one_row_per_class(conditional_run):
    width, height = Image.open(conditional_run / "images" / "000006.png").size
    scale = round(600 / (5 * 30 + 2))  # enlarged to about 600 px, whole pixels
    assert (width, height) == (scale * (5 * 30 + 2), scale * (10 * 30 + 2) + 28)  # 5 across, 10 digits down, a caption


def test_generate_draws_the_requested_class_from_the_ema_generator(conditional_run, tmp_path):
    out = write(Args(ckpt=str(conditional_run), n=6, out=str(tmp_path / "threes.npy"), label=3))
    threes = np.load(out)
    generator, _, _ = load_generator(str(conditional_run))
    state = torch.load(conditional_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(generator.net[0].weight, state["generator_ema.module.net.0.weight"])  # the average, by default
    z = generator.draw_noise(6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert np.allclose(threes, generator(z, torch.full((6,), 3)).numpy(), atol=1e-6)
        assert not np.allclose(threes, generator(z, torch.full((6,), 4)).numpy(), atol=1e-3)
    trained, _, _ = load_generator(str(conditional_run), ema=False)
    assert torch.equal(trained.net[0].weight, state["generator.net.0.weight"])
    assert generate(generator, 20, seed=0).shape == (20, 1, 28, 28)  # no label: the classes in turn
    with pytest.raises(UserError, match="knows classes 0 to 9"):
        write(Args(ckpt=str(conditional_run), n=2, out=str(tmp_path / "x.png"), label=10))


def test_a_class_for_an_unconditional_generator_is_a_clear_error(mnist_root, tmp_path):
    fit(make_cfg(*quick("trainer.max_steps=2", "sample_every=2"), run_dir=tmp_path))
    with pytest.raises(UserError, match="not conditional"):
        write(Args(ckpt=str(tmp_path), n=2, out=str(tmp_path / "x.png"), label=3))


def test_an_image_size_dcgan_cannot_mirror_stops_before_training(mnist_root, tmp_path):
    with pytest.raises(UserError, match=r"model.generator \(gan.networks.DCGANGenerator\) cannot be built.*square images"):
        fit(make_cfg(*quick("model=dcgan", "data.image_shape=[1,6,6]"), run_dir=tmp_path))
    assert not (tmp_path / "checkpoints").exists()
