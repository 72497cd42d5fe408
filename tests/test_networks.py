import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from gan.networks import MLPDiscriminator, MLPGenerator, keras_param_count
from tests.helpers import make_cfg


def linear_params(dims):
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def test_the_keras_example_models_have_its_parameter_counts():
    cfg = make_cfg()
    g, d = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    # Keras summary: Dense 25,856 + 131,584 + 525,312 + 803,600; BatchNorm 4 x (256 + 512 + 1024).
    assert linear_params([100, 256, 512, 1024, 784]) + 4 * (256 + 512 + 1024) == 1_493_520
    assert keras_param_count(g) == 1_493_520
    assert sum(p.numel() for p in g.parameters()) == 1_493_520 - 2 * (256 + 512 + 1024)  # gamma, beta trainable
    assert linear_params([784, 512, 256, 1]) == 533_505
    assert keras_param_count(d) == sum(p.numel() for p in d.parameters()) == 533_505


@pytest.mark.parametrize("latent, g_hidden, d_hidden",
                         [(64, [128], [64]), (10, [32, 16, 8], [100, 50, 25]), (100, [256, 512, 1024], [512, 256])])
def test_parameter_count_follows_latent_dim_and_hidden_dims(latent, g_hidden, d_hidden):
    cfg = make_cfg(f"model.latent_dim={latent}", f"model.generator.hidden_dims={g_hidden}",
                   f"model.discriminator.hidden_dims={d_hidden}")
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


SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
CONDITIONINGS = [None, "concat", "projection"]


def nets(model: str, shape, conditioning: str | None = None, *overrides: str):
    """G and D of conf/model/<model>.yaml for `shape` images (small DCGAN widths: the layout is the same)."""
    small = ["model.generator.width=8", "model.discriminator.width=8"] if model == "dcgan" else []
    cond = ["model.conditional=true", f"model.conditioning={conditioning}"] if conditioning else []
    cfg = make_cfg(f"model={model}", f"data.image_shape=[{','.join(map(str, shape))}]", *small, *cond, *overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_every_architecture_makes_images_in_range_and_one_logit_per_image(model, shape, conditioning):
    g, d = nets(model, shape, conditioning)
    labels = torch.tensor([0, 3, 9, 9, 1]) if conditioning else None
    images = g(g.draw_noise(5) * 3, labels)
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    logits = d(images, labels)
    assert logits.shape == (5,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_conditional_networks_depend_on_the_label(model, conditioning):
    g, d = nets(model, (1, 28, 28), conditioning)
    g.eval()  # BatchNorm statistics of the batch would mix the samples
    z = g.draw_noise(1).repeat(10, 1)
    images = g(z, torch.arange(10))
    assert all(not torch.allclose(images[0], images[i]) for i in range(1, 10))  # same z, other digit
    x = images[:1].repeat(10, 1, 1, 1)
    logits = d.eval()(x, torch.arange(10))
    assert len(set(logits.tolist())) == 10  # same image, other label, other verdict
    with pytest.raises(ValueError, match="labels must be given"):
        g(z)


def test_dcgan_follows_radford_et_al_at_64x64():
    g, d = nets("dcgan", (3, 64, 64), None, "model.generator.width=64", "model.discriminator.width=64")
    g_convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in g_convs] == [512, 256, 128, 64, 3]  # 4x4x8w -> 8x8x4w -> ... -> 64x64x3
    assert g_convs[0].kernel_size == (4, 4) and all(m.stride == (2, 2) for m in g_convs[1:])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 4  # all but the output layer
    assert sum(isinstance(m, nn.ReLU) for m in g.modules()) == 4 and isinstance(g.net[-1], nn.Tanh)
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in d_convs] == [64, 128, 256, 512] and all(m.stride == (2, 2) for m in d_convs)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in d.modules())  # strided convs, no pooling
    assert isinstance(d.body[1], nn.LeakyReLU) and d.body[1].negative_slope == 0.2  # no BatchNorm on the input layer
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    weights = torch.cat([m.weight.flatten() for m in g_convs + d_convs])
    assert weights.mean().abs() < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.02)  # N(0, 0.02)


@pytest.mark.parametrize("shape", [(1, 6, 6), (1, 28, 32), (3, 9, 9)])
def test_dcgan_refuses_image_sizes_it_cannot_mirror(shape):
    with pytest.raises(Exception, match="square images whose side halves"):
        nets("dcgan", shape)


def largest_singular_values(d: nn.Module) -> list[float]:
    layers = [m for m in d.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return [torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item() for m in layers]


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_spectral_norm_keeps_every_d_layer_at_unit_largest_singular_value(model):
    plain = largest_singular_values(nets(model, (1, 28, 28))[1])
    assert max(abs(s - 1) for s in plain) > 0.3  # without it the layers are far from 1
    g, d = nets(model, (1, 28, 28), None, "model.spectral_norm=true", "model.discriminator.batch_norm=false"
                if model == "dcgan" else "model.spectral_norm=true")
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    for _ in range(30):  # one power iteration per training-mode forward pass
        d(x)
    values = largest_singular_values(d.eval())
    assert len(values) == len(plain) and all(s == pytest.approx(1, abs=0.05) for s in values)
