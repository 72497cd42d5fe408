"""Each objective against values computed by hand; the penalties on critics whose gradients are known."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from gan.losses import Hinge, LeastSquares, Minimax, NonSaturating, Wasserstein, gradient_penalty, r1_penalty
from tests.helpers import CONF, make_cfg

REAL, FAKE = torch.tensor([2.0, -1.0]), torch.tensor([-3.0, 0.5])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# (loss, D's loss on REAL, D's loss on FAKE, G's loss on FAKE), by hand from each paper's formula
CASES = [
    (NonSaturating(), mean(-math.log(sig(x)) for x in (2, -1)), mean(-math.log(1 - sig(x)) for x in (-3, 0.5)),
     mean(-math.log(sig(x)) for x in (-3, 0.5))),
    (Minimax(), mean(-math.log(sig(x)) for x in (2, -1)), mean(-math.log(1 - sig(x)) for x in (-3, 0.5)),
     mean(math.log(1 - sig(x)) for x in (-3, 0.5))),
    (NonSaturating(real_label=0.9), mean(-(0.9 * math.log(sig(x)) + 0.1 * math.log(1 - sig(x))) for x in (2, -1)),
     mean(-math.log(1 - sig(x)) for x in (-3, 0.5)), mean(-math.log(sig(x)) for x in (-3, 0.5))),
    (LeastSquares(), mean(0.5 * (x - 1) ** 2 for x in (2, -1)), mean(0.5 * x**2 for x in (-3, 0.5)),
     mean(0.5 * (x - 1) ** 2 for x in (-3, 0.5))),
    (Hinge(), mean(max(0, 1 - x) for x in (2, -1)), mean(max(0, 1 + x) for x in (-3, 0.5)), -mean((-3, 0.5))),
    (Wasserstein(), -mean((2, -1)), mean((-3, 0.5)), -mean((-3, 0.5))),
]


@pytest.mark.parametrize("loss, d_real, d_fake, g", CASES, ids=lambda c: type(c).__name__ if not isinstance(c, float) else "")
def test_losses_match_their_formulas(loss, d_real, d_fake, g):
    assert loss.d_real(REAL).item() == pytest.approx(d_real, rel=1e-6)
    assert loss.d_fake(FAKE).item() == pytest.approx(d_fake, rel=1e-6)
    assert loss.g(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_minimax_saturates_where_nonsaturating_does_not():
    rejected = torch.tensor([-8.0], requires_grad=True)  # D is sure this fake is fake
    grads = []
    for loss in (Minimax(), NonSaturating()):
        (grad,) = torch.autograd.grad(loss.g(rejected), rejected)
        grads.append(grad.abs().item())
    assert grads[0] < 1e-3 < 0.99 < grads[1]


def test_every_loss_option_builds_its_class():
    built = {path.stem: type(instantiate(make_cfg(f"loss={path.stem}").loss)) for path in (CONF / "loss").glob("*.yaml")}
    assert built == {"nonsaturating": NonSaturating, "minimax": Minimax, "lsgan": LeastSquares, "hinge": Hinge,
                     "wgan_gp": Wasserstein}
    assert instantiate(make_cfg("loss=wgan_gp").loss).gp_weight == 10 and instantiate(make_cfg().loss).gp_weight == 0


class Linear(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, labels=None):
        return x.flatten(1) @ self.w + 0.3


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_and_positive_otherwise():
    torch.manual_seed(0)
    real, fake = torch.rand(16, 1, 4, 4), torch.rand(16, 1, 4, 4)
    w = torch.randn(16)
    assert gradient_penalty(Linear(w / w.norm()), real, fake).item() == pytest.approx(0, abs=1e-10)
    assert gradient_penalty(Linear(3 * w / w.norm()), real, fake).item() == pytest.approx(4)  # (3 - 1)^2
    relu_critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    penalty = gradient_penalty(lambda x, labels: relu_critic(x), real, fake)
    assert penalty.item() > 0
    penalty.backward()  # the penalty trains the critic: its weights get a gradient
    assert relu_critic[1].weight.grad.abs().sum() > 0


def test_gradient_penalty_samples_between_the_real_and_the_fake_of_each_pair():
    seen = []

    def critic(x, labels=None):
        seen.append(x.detach())
        return x.flatten(1).sum(1)

    real, fake = torch.zeros(64, 1, 2, 2), torch.ones(64, 1, 2, 2)
    gradient_penalty(critic, real, fake)
    mixed = seen[0]
    assert torch.all(mixed == mixed[:, :1, :1, :1])  # one mixing weight per pair
    assert 0 <= mixed.min() and mixed.max() <= 1 and mixed.std() > 0.2  # uniform over the segment


def test_r1_penalty_is_the_squared_input_gradient_norm_on_reals():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])
    real = torch.rand(5, 1, 2, 2, requires_grad=True)
    assert r1_penalty(Linear(w)(real), real).item() == pytest.approx(25)  # |w|^2
