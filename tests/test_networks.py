import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from gan.networks import MLPDiscriminator, MLPGenerator, keras_param_count
from tests.conftest import make_cfg


def linear_params(dims):
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def test_seed_models_have_the_keras_parameter_counts():
    cfg = make_cfg()
    g, d = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    # Keras summary: Dense 25,856 + 131,584 + 525,312 + 803,600; BatchNorm 4 x (256 + 512 + 1024).
    assert linear_params([100, 256, 512, 1024, 784]) + 4 * (256 + 512 + 1024) == 1_493_520
    assert keras_param_count(g) == 1_493_520
    assert sum(p.numel() for p in g.parameters()) == 1_493_520 - 2 * (256 + 512 + 1024)  # gamma, beta trainable
    assert linear_params([784, 512, 256, 1]) == 533_505
    assert keras_param_count(d) == sum(p.numel() for p in d.parameters()) == 533_505


@pytest.mark.parametrize("latent, g_hidden, d_hidden", [(64, [128], [64]), (10, [32, 16, 8], [100, 50, 25]), (100, [256, 512, 1024], [512, 256])])
def test_parameter_count_follows_latent_dim_and_hidden_dims(latent, g_hidden, d_hidden):
    cfg = make_cfg(f"model.latent_dim={latent}", f"model.generator.hidden_dims={g_hidden}", f"model.discriminator.hidden_dims={d_hidden}")
    g, d = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    assert keras_param_count(g) == linear_params([latent, *g_hidden, 784]) + 4 * sum(g_hidden)
    assert keras_param_count(d) == linear_params([784, *d_hidden, 1])
    z = torch.randn(5, latent)
    assert g(z).shape == (5, 1, 28, 28) and d(g(z)).shape == (5,)


def test_generator_layers_follow_the_keras_seed():
    g = instantiate(make_cfg().model.generator)
    kinds = [type(m) for m in g.net]
    assert kinds[:3] == [nn.Linear, nn.LeakyReLU, nn.BatchNorm1d]  # BatchNorm after the activation
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [bn.num_features for bn in bns] == [256, 512, 1024]
    assert all(bn.eps == 1e-3 and bn.momentum == pytest.approx(0.2) for bn in bns)
    assert all(m.negative_slope == 0.2 for m in g.modules() if isinstance(m, nn.LeakyReLU))
    out = g.eval()(torch.randn(64, 100) * 10)
    assert out.min() >= -1 and out.max() <= 1


def test_batch_norm_can_be_switched_off():
    g = instantiate(make_cfg("model.generator.batch_norm=false").model.generator)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in g.modules())


def test_glorot_uniform_init_has_zero_biases_and_glorot_bound():
    torch.manual_seed(0)
    d = MLPDiscriminator((1, 28, 28), [512, 256], init="glorot_uniform")
    for layer in (m for m in d.modules() if isinstance(m, nn.Linear)):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert torch.all(layer.bias == 0)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound


def test_torch_default_init_keeps_nonzero_biases():
    torch.manual_seed(0)
    g = MLPGenerator(100, [256], (1, 28, 28), init="torch_default")
    assert g.net[0].bias.abs().sum() > 0
