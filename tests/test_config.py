"""Every config option composes and builds; bad input stops early with one short message."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan.errors import UserError
from gan.schema import validate
from tests.helpers import CONF, make_cfg, run_cli

GROUPS = ["data", "model", "loss", "optimizer", "trainer", "logger", "callbacks", "experiment", "hparams_search", "debug"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def test_every_group_has_options():
    assert {group for group, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_validates_and_instantiates(group, option, tmp_path):
    cfg = make_cfg(f"{group}={option}", run_dir=tmp_path)
    validate(cfg)
    datamodule = instantiate(cfg.data)
    generator, discriminator = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    g_opt = instantiate(cfg.optimizer.generator)(generator.parameters())
    d_opt = instantiate(cfg.optimizer.discriminator)(discriminator.parameters())
    assert g_opt.param_groups[0]["lr"] > 0 and d_opt.param_groups[0]["lr"] > 0
    loggers = [instantiate(c) for c in cfg.logger.values()]
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    if group != "trainer" or option != "gpu":  # a GPU trainer needs a GPU to exist
        instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    assert datamodule.batch_size == cfg.data.batch_size


def test_default_run_is_exactly_the_keras_seed_experiment():
    default, seed = make_cfg(), make_cfg("experiment=keras_seed")
    assert OmegaConf.to_container(default, resolve=True) == OmegaConf.to_container(seed, resolve=True)
    assert default.trainer.max_steps == 30000 and default.data.batch_size == 32 and default.sample_every == 200
    assert default.optimizer.generator.lr == default.optimizer.discriminator.lr == 2e-4
    for net in (default.optimizer.generator, default.optimizer.discriminator):
        assert net._target_ == "torch.optim.Adam" and list(net.betas) == [0.5, 0.999] and net.eps == 1e-7
    assert default.callbacks.samples.nrow == 5


def test_shared_and_per_network_learning_rates():
    both = make_cfg("optimizer.lr=1e-4")
    assert both.optimizer.generator.lr == both.optimizer.discriminator.lr == 1e-4
    one = make_cfg("optimizer.discriminator.lr=4e-4")
    assert one.optimizer.generator.lr == 2e-4 and one.optimizer.discriminator.lr == 4e-4


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("model.latent_dim=abc", "model.latent_dim", "valid integer"),
        ("model.latent_dim=-3", "model.latent_dim", "greater than 0"),
        ("model.latent_dim=2.5", "model.latent_dim", "integer"),
        ("data.batch_size=0", "data.batch_size", "greater than 0"),
        ("trainer.accelerator=tpu9", "trainer.accelerator", "'cpu', 'gpu'"),
        ("trainer.precision=15", "trainer.precision", "'32-true'"),
        ("optimizer.lr=-1", "optimizer.lr", "greater than 0"),
        ("optimizer.betas=[0.5,1.5]", "optimizer.betas.1", "less than 1"),
        ("gan.d_update=three_steps", "gan.d_update", "'two_steps' or 'joint'"),
        ("data.sampling=sometimes", "data.sampling", "'with_replacement' or 'epochs'"),
        ("model.generator.hidden_dims=[]", "model.generator.hidden_dims", "at least 1"),
        ("+model.dropout=0.5", "model.dropout", "not a known key"),
        ("seed=-1", "seed", "greater than or equal to 0"),
        ("trainer.devices=2", "trainer.devices", "input should be 1"),
        ("callbacks.samples.nrow=0", "callbacks.samples.nrow", "greater than 0"),
        ("gan.ema_decay=1.5", "gan.ema_decay", "less than 1"),
        ("model.conditioning=sum", "model.conditioning", "'concat' or 'projection'"),
        ("model.noise=gamma", "model.noise", "'normal' or 'uniform'"),
        ("loss.real_label=0", "loss.real_label", "greater than 0"),
        ("loss.r1_gamma=-1", "loss.r1_gamma", "greater than or equal to 0"),
        ("model=dcgan model.generator.width=0", "model.generator.width", "greater than 0"),
        ("data.num_classes=1", "data.num_classes", "greater than or equal to 2"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, key, hint):
    with pytest.raises(UserError) as err:
        validate(make_cfg(*override.split()))
    message = str(err.value)
    assert f"`{key}" in message and hint in message and "\n" not in message


def test_a_bad_value_reached_through_an_interpolation_names_its_source():
    with pytest.raises(UserError) as err:
        validate(make_cfg("optimizer.betas=[0.5,1.5]"))
    assert "`optimizer.generator.betas.1=1.5` (from ${optimizer.betas}): input should be less than 1" in str(err.value)


CLI_ERRORS = [
    ("model.latent_dim=abc", "`model.latent_dim='abc'`: input should be a valid integer"),
    ("model.latent_dim=-3", "`model.latent_dim=-3`: input should be greater than 0"),
    ("optimizer=nosuch", "Could not find 'optimizer/nosuch'"),
    ("trainer.accelerator=tpu9", "`trainer.accelerator='tpu9'`: input should be 'cpu', 'gpu', 'cuda', 'mps' or 'auto'"),
    ("data.batch_size=0", "`data.batch_size=0`: input should be greater than 0"),
    ("model.latnt_dim=64", "Key 'latnt_dim' is not in struct"),
    ("+optimizer.generator.lrr=1", "optimizer.generator (torch.optim.Adam) does not accept its arguments"),
]


@pytest.mark.parametrize("override, message", CLI_ERRORS, ids=[o for o, _ in CLI_ERRORS])
def test_command_line_errors_are_short_and_stop_before_training(override, message, tmp_path):
    result = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 15, result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_option_error_lists_the_available_options(tmp_path):
    result = run_cli("optimizer=nosuch", cwd=tmp_path)
    assert "adam" in result.stderr and "rmsprop" in result.stderr and "sgd" in result.stderr
