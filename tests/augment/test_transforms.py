"""Each augmentation against a hand computation on a small image, gradients through it to G, and
ADA's adjustment of p against the paper's formula (a stand-in D)."""

from __future__ import annotations

import math

import pytest
import torch

from gan.augment import ADA, DiffAugment, NoAugment
from gan.augment.ada import GATES, TRANSFORMS, AdaDraws
from gan.augment.diffaugment import DiffAugmentDraws, moved_and_cut


def diff_draws(n: int = 1, shift=(0, 0), corner=(0, 0), b=0.5, s=0.5, c=0.5) -> DiffAugmentDraws:
    full = lambda v: torch.full((n,), float(v))
    return DiffAugmentDraws(full(b), full(s), full(c), torch.tensor([shift] * n), torch.tensor([corner] * n))


def ada_draws(n: int, gate: float = 0.0, uniform: dict | None = None, normal: dict | None = None) -> AdaDraws:
    """Draws with every gate at `gate` and chosen parameter columns set."""
    u, g = torch.full((n, 8), 0.5), torch.zeros(n, 7)
    for column, value in (uniform or {}).items():
        u[:, column] = value
    for column, value in (normal or {}).items():
        g[:, column] = value
    return AdaDraws(torch.full((n, len(GATES)), gate), u, g)


def test_a_translation_moves_pixels_where_it_says_and_fills_with_zero():
    x = torch.arange(1, 17.0).view(1, 1, 4, 4)
    moved = moved_and_cut(x, torch.tensor([[1, -2]]), None)  # one row down, two columns left
    expected = torch.zeros(4, 4)
    expected[1:, :2] = x[0, 0, :3, 2:]
    assert torch.equal(moved[0, 0], expected)
    assert torch.equal(moved_and_cut(x, torch.tensor([[0, 0]]), None), x)
    both = moved_and_cut(x, torch.tensor([[1, -2]]), torch.tensor([[0, 0]]), (2, 1))  # moved, then a 2x1 box cut
    expected[:2, :1] = 0
    assert torch.equal(both[0, 0], expected)


def test_cutout_zeroes_the_box_it_drew_even_over_the_edge():
    x = torch.ones(1, 2, 6, 6)
    cut = moved_and_cut(x, None, torch.tensor([[4, -1]]), (3, 3))  # a 3x3 box from row 4, column -1
    expected = torch.ones(6, 6)
    expected[4:, :2] = 0
    assert torch.equal(cut[0, 0], expected) and torch.equal(cut[0, 1], expected)
    policy = DiffAugment(policy=["cutout"])  # half the side of a 6x6 image: a 3x3 box, where the draw says
    assert torch.equal(policy(x, diff_draws(corner=(4, -1)))[0, 0], expected)


def test_colour_draws_at_their_middle_are_the_identity_and_brightness_adds():
    colour = DiffAugment(policy=["color"])
    x = torch.rand(2, 3, 5, 5) * 2 - 1
    assert torch.allclose(colour(x, diff_draws(2)), x, atol=1e-6)  # +0, x1 saturation, x1 contrast
    assert torch.allclose(colour(x, diff_draws(2, b=1.0)), x + 0.5, atol=1e-6)  # the paper's u - 0.5 at its top
    assert torch.allclose(colour(x, diff_draws(2, c=1.0)), (x - x.mean((1, 2, 3), keepdim=True)) * 1.5
                          + x.mean((1, 2, 3), keepdim=True), atol=1e-6)
    grey = torch.rand(2, 1, 5, 5)
    assert torch.allclose(colour(grey, diff_draws(2, s=0.0)), grey, atol=1e-6)  # no saturation for grey
    assert "no saturation" in colour.describe(1) and "saturation)" in colour.describe(3)


def test_diffaugment_draws_stay_in_range_and_are_a_function_of_the_generator_alone():
    augment = DiffAugment()
    d = augment.draw(512, (32, 32), torch.Generator().manual_seed(0), "cpu")
    assert d.shift.min() == -4 and d.shift.max() == 4  # 32/8, both ends drawn
    assert d.corner.min() >= -8 and d.corner.max() <= 32 - 8
    again = augment.draw(512, (32, 32), torch.Generator().manual_seed(0), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(d, again))


def test_ada_at_p_zero_is_the_identity_bit_for_bit_on_colour_and_grey():
    rng = torch.Generator().manual_seed(0)
    for channels in (3, 1):
        x = torch.rand(16, channels, 9, 7) * 2 - 1
        ada = ADA(p=0.0)
        assert torch.equal(ada(x, ada.draw(16, (9, 7), rng, "cpu")), x)
    assert torch.equal(NoAugment()(x, None), x)


def test_ada_xflip_rotate90_and_integer_translation_are_exact_pixel_moves():
    x = torch.rand(4, 3, 6, 6)
    flip = ADA(transforms=["xflip"], p=1.0)
    assert torch.equal(flip(x, ada_draws(4, uniform={0: 0.75})), x.flip(-1))  # the flip bit is 1
    assert torch.equal(flip(x, ada_draws(4, uniform={0: 0.25})), x)  # applied, but the bit is 0
    turn = ADA(transforms=["rotate90"], p=1.0)
    turned = [turn(x, ada_draws(4, uniform={1: (k + 0.5) / 4})) for k in range(4)]
    assert torch.equal(turned[0], x)
    for k in (1, 2, 3):
        assert any(torch.equal(turned[k], torch.rot90(x, j, dims=(2, 3))) for j in (1, 2, 3))
    assert len({turned[k].sum(dim=(0, 1)).flatten()[:6].tolist().__repr__() for k in range(4)}) == 4  # four different turns
    move = ADA(transforms=["xint"], p=1.0, xint_max=0.5)
    # u = 0.75 -> t = (2u - 1) * 0.5 = 0.25 of the side: 1.5 -> 2 pixels (rounded) right and down
    moved = move(x, ada_draws(4, uniform={2: 0.75, 3: 0.75}))
    assert torch.equal(moved[..., 2:, 2:], x[..., :-2, :-2])  # what the map reads from inside the image ...
    assert torch.equal(moved[..., 0, 2:], x[..., 2, :-2])  # ... and the mirrored border (row -2 reads row 2)


def test_ada_applies_each_transform_with_probability_p_and_always_at_one():
    x = torch.rand(1, 3, 8, 8).expand(4000, 3, 8, 8)
    for p in (0.3, 1.0):
        flip = ADA(transforms=["xflip"], p=p)
        draws = ada_draws(4000, uniform={0: 0.75})
        draws = draws._replace(gate=torch.rand(4000, len(GATES), generator=torch.Generator().manual_seed(1)))
        flipped = (flip(x, draws) != x).flatten(1).any(1).float().mean().item()
        assert flipped == 1.0 if p == 1 else abs(flipped - p) < 0.03
    # the rotation comes twice, each with 1 - sqrt(1 - p): an image is rotated with probability p in all
    rotate = ADA(transforms=["rotate"], p=0.36)
    chance = rotate.p * rotate.enabled
    twice = 1 - (1 - torch.where(rotate.rotates, 1 - (1 - chance).sqrt(), chance)[rotate.rotates]).prod()
    assert math.isclose(float(twice), 0.36, rel_tol=1e-5)


def test_ada_colour_transforms_match_their_formulas():
    x = torch.rand(3, 3, 4, 4) * 2 - 1
    bright = ADA(transforms=["brightness"], p=1.0, brightness_std=0.2)
    assert torch.allclose(bright(x, ada_draws(3, normal={4: 1.5})), x + 0.3, atol=1e-6)  # + std * n
    contrast = ADA(transforms=["contrast"], p=1.0, contrast_std=0.5)
    assert torch.allclose(contrast(x, ada_draws(3, normal={5: 2.0})), x * 2, atol=1e-6)  # x 2^(std * n), about 0
    luma = ADA(transforms=["lumaflip"], p=1.0)
    flipped = luma(x, ada_draws(3, uniform={6: 0.75}))
    grey_axis = x.mean(1, keepdim=True)
    assert torch.allclose(flipped, x - 2 * grey_axis, atol=1e-6)  # the luma component negated, colour kept
    saturation = ADA(transforms=["saturation"], p=1.0)
    assert torch.allclose(saturation(x, ada_draws(3, normal={6: -30.0})), grey_axis.expand_as(x), atol=1e-5)  # s ~ 0: grey
    hue = ADA(transforms=["hue"], p=1.0)  # u = 5/6 -> a third of a turn: the channels' roles rotate
    turned = hue(x, ada_draws(3, uniform={7: 5 / 6}))
    assert any(torch.allclose(turned, x[:, order], atol=1e-5) for order in ([1, 2, 0], [2, 0, 1]))
    grey = torch.rand(2, 1, 4, 4)
    colour_only = ADA(transforms=["lumaflip", "hue", "saturation"], p=1.0)  # grey images skip them
    assert torch.equal(colour_only(grey, ada_draws(2, uniform={6: 0.75, 7: 5 / 6}, normal={6: -30.0})), grey)
    assert "not lumaflip, hue, saturation (grey images)" in ADA().describe(1) and "grey" not in ADA().describe(3)


@pytest.mark.parametrize("augment", [
    *[DiffAugment(policy=[p]) for p in ("color", "translation", "cutout")],
    *[ADA(transforms=[t], p=1.0) for t in TRANSFORMS],
], ids=lambda a: type(a).__name__ + "-" + "-".join(getattr(a, "policy", ()) or a.transforms))
def test_gradients_reach_the_generator_through_every_transform(augment):
    """Finite differences against autograd, through G's weights, the augmentation and a tiny D."""
    torch.manual_seed(0)
    weight = torch.randn(3 * 6 * 6, 4, dtype=torch.float64, requires_grad=True)  # G: z -> a 3x6x6 image
    z = torch.randn(5, 4, dtype=torch.float64)
    probe = torch.randn(3 * 6 * 6, dtype=torch.float64)  # D: a fixed linear read-out, squared
    draws = augment.draw(5, (6, 6), torch.Generator().manual_seed(3), "cpu")
    augment.double()

    def d_of_g(w: torch.Tensor) -> torch.Tensor:
        images = torch.tanh(z @ w.T).view(5, 3, 6, 6)
        return (augment(images, draws).flatten(1) @ probe).pow(2).sum()

    assert torch.autograd.gradcheck(d_of_g, (weight,))
    (grad,) = torch.autograd.grad(d_of_g(weight), weight)
    assert grad.abs().sum() > 0


def test_ada_steers_p_by_the_papers_formula_and_keeps_it_in_zero_to_one():
    ada = ADA(p=0.0, target=0.6, kimg=1.0, interval=4)
    sure = torch.full((32, 1), 3.0)  # a stand-in D that is sure of every real: r_t = 1
    history = []
    for _ in range(40):
        ada.adapt([sure])
        history.append(float(ada.p))
    step = 32 * 4 / 1000  # sign(1 - 0.6) * (batch * interval) / (kimg * 1000)
    assert history[:3] == [0.0, 0.0, 0.0] and math.isclose(history[3], step, rel_tol=1e-6)
    assert math.isclose(history[7], 2 * step, rel_tol=1e-5) and history[-1] == 1.0  # rises, stops at 1
    assert float(ada.rt) == 1.0
    unsure = torch.tensor([[1.0]] * 12 + [[-1.0]] * 20)  # r_t = (12 - 20) / 32 = -0.25 < 0.6
    for _ in range(4 * 5):
        ada.adapt([unsure])
    assert math.isclose(float(ada.p), 1 - 5 * step, rel_tol=1e-5) and float(ada.rt) == -0.25
    for _ in range(4 * 10):
        ada.adapt([unsure])
    assert float(ada.p) == 0.0  # falls, stops at 0
    fixed = ADA(p=0.3, target=None)
    fixed.adapt([sure])
    assert float(fixed.p) == pytest.approx(0.3) and set(fixed.scalars()) == {"train/aug_p"}
    assert set(ada.scalars()) == {"train/aug_p", "train/ada_rt"}
    assert {"p", "rt", "signs", "iterations"} <= set(ada.state_dict())  # state: in every checkpoint
