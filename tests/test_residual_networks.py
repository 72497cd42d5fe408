"""The residual networks (gan/networks/resnet.py, gan/networks/r3gan.py): the reference
implementations' parameter counts, shapes at every preset size, conditional and not, R3GAN's
fix-up start and its bilinear resampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan.networks import R3GANDiscriminator, R3GANGenerator, ResNetDiscriminator, ResNetGenerator
from gan.networks.r3gan import Resample, ResidualBlock

SIZES = (32, 64, 128, 256)
# torch-mimicry's SNGANGenerator32/64/128 and SNGANDiscriminator32/64/128 (their defaults), built and counted.
MIMICRY_COUNTS = {32: (4_276_739, 1_053_825), 64: (12_220_675, 10_141_441), 128: (32_150_787, 29_017_857)}
# brownvc/R3GAN's R3GAN.Networks Generator and Discriminator for train.py's presets, built and counted.
CIFAR10 = {"widths": [768] * 4, "cardinalities": [96] * 4, "blocks": [2] * 4}
FFHQ64 = {"widths": [768] * 4 + [384], "cardinalities": [96] * 4 + [48], "blocks": [2] * 5}
R3GAN_COUNTS = [((3, 32, 32), CIFAR10, False, (20_732_160, 20_683_776)),
                ((3, 32, 32), CIFAR10, True, (20_781_952, 21_280_512)),
                ((3, 64, 64), FFHQ64, False, (22_429_824, 22_381_440))]


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def small_r3gan(size: int) -> dict:
    stages = {32: 4, 64: 5, 128: 6, 256: 7}[size]
    return {"widths": [8] * stages, "cardinalities": [2] * stages, "blocks": [1] * stages}


@pytest.mark.parametrize("size", list(MIMICRY_COUNTS))
def test_resnet_presets_have_the_reference_parameter_counts(size):
    with torch.device("meta"):
        g, d = ResNetGenerator(128, (3, size, size)), ResNetDiscriminator((3, size, size))
    assert (count(g), count(d)) == MIMICRY_COUNTS[size]


@pytest.mark.parametrize("shape, stages, conditional, counts", R3GAN_COUNTS, ids=["cifar10", "cifar10-conditional", "ffhq64"])
def test_r3gan_presets_have_the_reference_parameter_counts(shape, stages, conditional, counts):
    with torch.device("meta"):
        g = R3GANGenerator(64, shape, **stages, conditional=conditional)
        d = R3GANDiscriminator(shape, **stages, conditional=conditional)
    assert (count(g), count(d)) == counts


def networks(family: str, size: int, conditional: bool, conditioning: str = "projection"):
    shape = (3, size, size)
    if family == "resnet":
        return (ResNetGenerator(16, shape, width=4, conditional=conditional, label_dim=8),
                ResNetDiscriminator(shape, width=4, conditional=conditional, conditioning=conditioning, label_dim=3))
    return (R3GANGenerator(16, shape, **small_r3gan(size), conditional=conditional),
            R3GANDiscriminator(shape, **small_r3gan(size), conditional=conditional))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("family, conditional, conditioning", [
    ("resnet", False, None), ("resnet", True, "projection"), ("resnet", True, "concat"), ("r3gan", False, None),
    ("r3gan", True, None)])
def test_shapes_at_every_preset_size(family, size, conditional, conditioning):
    torch.manual_seed(0)
    g, d = networks(family, size, conditional, conditioning or "projection")
    labels = torch.tensor([1, 7, 7]) if conditional else None
    images = g(torch.randn(3, 16), labels)
    assert images.shape == (3, 3, size, size) and torch.isfinite(images).all()
    if family == "resnet":
        assert images.abs().max() <= 1  # tanh
    logits = d(images, labels)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    if conditional:  # the label reaches both: same noise and image, another class, other outputs
        other = torch.tensor([2, 7, 7])
        g.eval(), d.eval()  # (spectral norm and BatchNorm fixed between the calls)
        assert not torch.equal(g(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), labels)[0],
                               g(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), other)[0])
        assert d(images, labels)[0] != d(images, other)[0] and d(images, labels)[1] == d(images, other)[1]


def test_resnet_blocks_follow_the_references():
    g, d = ResNetGenerator(128, (3, 32, 32)), ResNetDiscriminator((3, 32, 32))
    assert [block.conv1.out_channels for block in g.blocks] == [256, 256, 256]  # SNGAN CIFAR-10: 256 channels
    blocks = list(d.body)[:4]
    assert [b.conv2.out_channels for b in blocks] == [128] * 4 and [b.downsample for b in blocks] == [True, True, False, False]
    assert [isinstance(b.shortcut, torch.nn.Identity) for b in blocks] == [False, False, True, True]
    assert all(hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, torch.nn.Conv2d))  # spectral norm
    assert not any(hasattr(m, "parametrizations") for m in g.modules() if isinstance(m, torch.nn.Conv2d))
    with pytest.raises(ValueError, match="presets for square images of"):
        ResNetGenerator(128, (1, 28, 28))
    with pytest.raises(ValueError, match="batch_norm=false needs model.conditional=false"):
        ResNetGenerator(128, (3, 32, 32), batch_norm=False, conditional=True)


@pytest.mark.parametrize("conditional", [False, True])
def test_every_r3gan_residual_branch_contributes_exactly_zero_at_step_zero_and_then_trains(conditional):
    torch.manual_seed(0)
    g, d = networks("r3gan", 32, conditional)
    labels = torch.tensor([0, 3]) if conditional else None
    branches = [m.branch for net in (g, d) for m in net.modules() if isinstance(m, ResidualBlock)]
    outputs = []
    hooks = [b.register_forward_hook(lambda _, __, out: outputs.append(out)) for b in branches]
    d(g(torch.randn(2, 16), labels), labels).sum().backward()
    for hook in hooks:
        hook.remove()
    assert len(outputs) == len(branches) == 8
    assert all(torch.equal(out, torch.zeros_like(out)) for out in outputs)
    assert all(b[-1].weight.grad.abs().sum() > 0 for b in branches)  # the zero layer still learns


def test_r3gan_resampling_is_bilinear():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    up, down = Resample(3, 3, True, (1, 2, 1)).double(), Resample(3, 3, False, (1, 2, 1)).double()
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the zero padding at the border
    bilinear_up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(up(x)[inner], bilinear_up[inner])
    bilinear_down = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    assert down(x).shape == (2, 3, 8, 8) and torch.allclose(down(x)[inner], bilinear_down[inner])


@pytest.mark.parametrize("change, message", [
    ({"widths": [8] * 5, "cardinalities": [2] * 5, "blocks": [1] * 5}, "5 stages in model.widths make 64 px"),
    ({"cardinalities": [3] * 4}, "model.cardinalities: 3 groups do not divide"),
    ({"blocks": [1] * 3}, "one entry per stage each"),
])
def test_r3gan_stage_lists_that_do_not_fit_name_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        R3GANGenerator(16, (3, 32, 32), **{**small_r3gan(32), **change})
