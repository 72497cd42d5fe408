"""Every config option composes and builds; bad input stops early with one short message."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from gan.config.building import network_optimizer
from gan.config.signatures import parameters
from gan.errors import UserError
from gan.module import GAN
from gan.training.schema import validate
from tests.helpers import CONF, PADDED_MNIST, make_cfg, run_cli

GROUPS = ["data", "model", "loss", "augment", "optimizer", "trainer", "logger", "callbacks", "experiment", "hparams_search",
          "debug"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
NEEDS = {("model", "resnet"): PADDED_MNIST, ("model", "r3gan"): PADDED_MNIST}


def test_every_group_has_options():
    assert {group for group, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_validates_and_instantiates(group, option, tmp_path):
    cfg = make_cfg(f"{group}={option}", *NEEDS.get((group, option), []), run_dir=tmp_path)
    validate(cfg)
    datamodule = instantiate(cfg.data)
    generator, discriminator = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    g_opt = network_optimizer(cfg.optimizer, "generator")(generator.parameters())
    d_opt = network_optimizer(cfg.optimizer, "discriminator")(discriminator.parameters())
    assert g_opt.param_groups[0]["lr"] > 0 and d_opt.param_groups[0]["lr"] > 0
    loggers = [instantiate(c) for c in cfg.logger.values()]
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert callable(instantiate(cfg.augment))
    if group != "trainer" or option != "gpu":  # a GPU trainer needs a GPU to exist
        instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    assert datamodule.batch_size == cfg.data.batch_size


def test_the_default_run_builds_the_keras_example(mnist_root):
    """What `python train.py` builds, read off the built objects, and the same as experiment=keras_seed."""
    default, keras = make_cfg(), make_cfg("experiment=keras_seed")
    assert OmegaConf.to_container(default, resolve=True) == OmegaConf.to_container(keras, resolve=True)
    module, datamodule = GAN.from_config(default), instantiate(default.data)
    g_opt = module.g_optimizer(module.generator.parameters())
    d_opt = module.d_optimizer(module.discriminator.parameters())
    for opt in (g_opt, d_opt):
        group = opt.param_groups[0]
        assert type(opt) is torch.optim.Adam and group["lr"] == 2e-4 and tuple(group["betas"]) == (0.5, 0.999)
        assert group["eps"] == 1e-7
    assert datamodule.batch_size == 32 and module.d_update == "two_steps" and module.fakes_mode == "eval"
    trainer = instantiate(default.trainer)
    assert trainer.max_steps == 30000
    grid = instantiate(default.callbacks.samples)
    assert grid.every_n_steps == 200 and grid.nrow == 5


def test_shared_and_per_network_learning_rates():
    def rates(*overrides):
        cfg = make_cfg(*overrides)
        return [network_optimizer(cfg.optimizer, net)([torch.zeros(1, requires_grad=True)]).param_groups[0]["lr"]
                for net in ("generator", "discriminator")]

    assert rates("optimizer.lr=1e-4") == [1e-4, 1e-4]
    assert rates("optimizer.discriminator.lr=4e-4") == [2e-4, 4e-4]
    assert rates("optimizer=sgd", "+optimizer.generator.momentum=0.5", "optimizer.lr=0.1") == [0.1, 0.1]
    cfg = make_cfg("optimizer=sgd", "+optimizer.generator.momentum=0.5")
    built = network_optimizer(cfg.optimizer, "generator")([torch.zeros(1, requires_grad=True)])
    assert built.param_groups[0]["momentum"] == 0.5  # one network's own argument, over the group's 0.9


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("model.latent_dim=abc", "model.latent_dim", "valid integer"),
        ("model.latent_dim=-3", "model.latent_dim", "greater than 0"),
        ("model.latent_dim=2.5", "model.latent_dim", "integer"),
        ("data.batch_size=0", "data.batch_size", "greater than 0"),
        ("trainer.accelerator=tpu9", "trainer.accelerator", "'cpu', 'gpu'"),
        ("trainer.precision=15", "trainer.precision", "'32-true'"),
        ("trainer.precision=bf16-true", "trainer.precision", "use bf16-mixed"),
        ("trainer=cpu trainer.precision=16-mixed", "trainer.precision", "needs a GPU"),
        ("optimizer.lr=-1", "optimizer.lr", "greater than 0"),
        ("optimizer.beta2=1.5", "optimizer.beta2", "less than 1"),
        ("gan.d_update=three_steps", "gan.d_update", "'two_steps' or 'joint'"),
        ("data.sampling=sometimes", "data.sampling", "'with_replacement' or 'epochs'"),
        ("model.generator.hidden_dims=[]", "model.generator.hidden_dims", "at least 1"),
        ("+model.dropout=0.5", "model.dropout", "not a known key"),
        ("seed=-1", "seed", "greater than or equal to 0"),
        ("trainer.devices=2", "trainer.devices", "needs trainer=ddp"),
        ("+trainer.max_epochs=2", "trainer.max_epochs", "input should be -1 or None"),
        ("callbacks.samples.nrow=0", "callbacks.samples.nrow", "greater than 0"),
        ("gan.ema_decay=1.5", "gan.ema_decay", "less than 1"),
        ("model.conditioning=sum", "model.conditioning", "'concat', 'projection' or 'auxiliary'"),
        ("model.noise=gamma", "model.noise", "'normal' or 'uniform'"),
        ("loss.real_label=0", "loss.real_label", "greater than 0"),
        ("loss.r1_gamma=-1", "loss.r1_gamma", "greater than or equal to 0"),
        ("model=dcgan model.generator.width=0", "model.generator.width", "greater than 0"),
        ("data.num_classes=1", "data.num_classes", "greater than or equal to 2"),
        ("augment=diffaug augment.policy=[color,zoom]", "augment.policy.1", "'color', 'translation' or 'cutout'"),
        ("augment=ada augment.transforms=[xflip,shear]", "augment.transforms.1", "'xflip', 'rotate90'"),
        ("augment=ada augment.p=1.5", "augment.p", "less than or equal to 1"),
        ("augment=ada augment.p=-0.1", "augment.p", "greater than or equal to 0"),
        ("augment=ada augment.target=2", "augment.target", "less than or equal to 1"),
        ("augment=ada augment.kimg=0", "augment.kimg", "greater than 0"),
        ("augment=ada augment.interval=0", "augment.interval", "greater than 0"),
        ("augment=ada augment.scale_std=-1", "augment.scale_std", "greater than or equal to 0"),
        ("augment=diffaug augment.brightness=-0.5", "augment.brightness", "greater than or equal to 0"),
        ("augment=diffaug augment.cutout=1.5", "augment.cutout", "less than or equal to 1"),
        ("data.subset=0", "data.subset", "greater than 0"),
        ("data.mirror=sometimes", "data.mirror", "valid boolean"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, key, hint):
    with pytest.raises(UserError) as err:
        validate(make_cfg(*override.split()))
    message = str(err.value)
    assert f"`{key}" in message and hint in message and "\n" not in message


def test_augmenting_data_that_are_not_grey_or_colour_images_is_refused():
    with pytest.raises(UserError) as err:  # (a shape of other than 3 dimensions the datasets refuse already)
        validate(make_cfg("augment=ada", "data.image_shape=[2,28,28]"))
    message = str(err.value)
    assert "augment=ADA transforms images of 1 or 3 channels" in message and "data.image_shape=" in message
    assert "\n" not in message
    validate(make_cfg("augment=none", "data.image_shape=[2,28,28]"))  # without augmentation: nothing to refuse here


@pytest.mark.parametrize("overrides, hint", [
    (["gan.ema_decay=0.999", "gan.ema_kimg=10"], "both set the average of G's weights"),
    (["gan.ema_rampup=0.05"], "warms up the half-life `gan.ema_kimg`, which is null"),
])
def test_keys_of_the_average_that_do_not_fit_together_are_one_paragraph(overrides, hint):
    with pytest.raises(UserError) as err:
        validate(make_cfg(*overrides))
    assert hint in str(err.value) and "\n" not in str(err.value)
    validate(make_cfg("gan.ema_kimg=10", "gan.ema_rampup=0.05"))  # the pair StyleGAN2 uses


def test_a_bad_value_reached_through_an_interpolation_names_its_source():
    with pytest.raises(UserError) as err:
        validate(make_cfg("optimizer.beta2=1.5"))
    assert "`optimizer.betas.1=1.5` (from ${optimizer.beta2}): input should be less than 1" in str(err.value)


CLI_ERRORS = [
    ("model.latent_dim=abc", "`model.latent_dim='abc'`: input should be a valid integer"),
    ("model.latent_dim=-3", "`model.latent_dim=-3`: input should be greater than 0"),
    ("optimizer=nosuch", "Could not find 'optimizer/nosuch'"),
    ("trainer.accelerator=tpu9", "`trainer.accelerator='tpu9'`: input should be 'cpu', 'gpu', 'cuda', 'mps' or 'auto'"),
    ("data.batch_size=0", "`data.batch_size=0`: input should be greater than 0"),
    ("model.latnt_dim=64", "Key 'latnt_dim' is not in struct"),
    ("+optimizer.generator.lrr=1", "`optimizer.generator.lrr` is not an argument of torch.optim.Adam"),
    ("augment=diffaug augment.policy=[zoom]", "`augment.policy.0='zoom'`: input should be 'color', 'translation' or 'cutout'"),
    ("augment=ada data.image_shape=[2,28,28]", "augment=ADA transforms images of 1 or 3 channels"),
]


@pytest.mark.parametrize("override, message", CLI_ERRORS, ids=[o for o, _ in CLI_ERRORS])
def test_command_line_errors_are_short_and_stop_before_training(override, message, tmp_path):
    result = run_cli(*override.split(), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 15, result.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run folder


def test_option_error_lists_the_available_options(tmp_path):
    result = run_cli("optimizer=nosuch", cwd=tmp_path)
    assert "adam" in result.stderr and "rmsprop" in result.stderr and "sgd" in result.stderr


def target_nodes(node, path=""):
    """Paths of the nodes that instantiate a class (`_target_`), below `node`."""
    if "_target_" in node:
        yield path
    for key, value in node.items():
        if OmegaConf.is_dict(value):
            yield from target_nodes(value, f"{path}.{key}" if path else key)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_key_of_every_option_reaches_a_parameter_that_exists(group, option):
    """validate() accepts the option only if each key is a parameter of what it instantiates (or of
    RunOptions / the update rule, or is read by another key); a key that reaches nothing is named."""
    cfg = make_cfg(f"{group}={option}")
    validate(cfg)
    for path in target_nodes(cfg):
        if parameters(OmegaConf.select(cfg, path)._target_).open:
            continue  # TensorBoardLogger passes any other keyword on to SummaryWriter, which checks it
        broken = cfg.copy()
        with open_dict(broken):
            OmegaConf.update(broken, f"{path}.no_such_argument", 1, force_add=True)
        with pytest.raises(UserError, match=rf"`{re.escape(path)}.no_such_argument` is not an argument of"):
            validate(broken)
    stray = cfg.copy()
    with open_dict(stray):
        stray.model.no_such_key = 1
    with pytest.raises(UserError, match="`model.no_such_key` is not a known key"):
        validate(stray)


@pytest.mark.parametrize("override, message", [
    ("hydra.run.dir=/proc/no/such/run", "hydra.run.dir=/proc/no/such/run: cannot create the run folder there"),
    ("threads=0", "`threads=0`: input should be greater than 0 or 'auto'"),
    pytest.param("trainer=gpu", "trainer (pytorch_lightning.Trainer) cannot be built from this config",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU trainer builds where there is a GPU")),
])
def test_more_command_line_errors_are_one_paragraph(override, message, mnist_root, tmp_path):
    result = run_cli("debug=fast", override, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_an_outputs_folder_that_cannot_be_made_is_one_paragraph(mnist_root, tmp_path):
    (tmp_path / "outputs").write_text("a file where the runs' folder would go")
    result = run_cli("debug=fast", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Cannot create outputs/" in result.stderr and "hydra.run.dir=" in result.stderr, result.stderr[-2000:]
