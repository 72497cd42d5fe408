"""Each objective against values computed by hand; the penalties on critics whose gradients are known."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from gan.losses import Hinge, LeastSquares, Minimax, NonSaturating, RelativisticPairing, Wasserstein, gradient_penalty, r1_penalty
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
                     "wgan_gp": Wasserstein, "rpgan": RelativisticPairing}
    rpgan = instantiate(make_cfg("loss=rpgan", "loss.r1_gamma=0.3").loss)
    assert rpgan.pairs and rpgan.r1_gamma == rpgan.r2_gamma == 0.3  # one gamma for both, as R3GAN
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


def test_rpgan_compares_each_real_with_its_fake():
    loss = RelativisticPairing()
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert loss.d(REAL, FAKE).item() == pytest.approx(mean(softplus(f - r) for r, f in ((2, -3), (-1, 0.5))), rel=1e-6)
    assert loss.g(FAKE, REAL).item() == pytest.approx(mean(softplus(r - f) for r, f in ((2, -3), (-1, 0.5))), rel=1e-6)
    real, fake = REAL.clone().requires_grad_(True), FAKE.clone().requires_grad_(True)
    loss.d(real, fake).backward()  # d/d(real_i) = -sigmoid(f_i - r_i) / n: raising a real's score lowers D's loss
    assert torch.allclose(real.grad, -torch.sigmoid(FAKE - REAL) / 2) and torch.allclose(fake.grad, -real.grad)
    with pytest.raises(TypeError, match="one step on the pairs"):
        loss.d_real(REAL)


class Tiny(nn.Module):
    """A small nonlinear D, so that its input gradient changes with the input and with its weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1), nn.Flatten(0))

    def forward(self, x, labels=None):
        return self.net(x)


def finite_difference_penalty(d: nn.Module, images: torch.Tensor, h: float = 1e-4) -> float:
    """E_i ||grad_x D(x_i)||^2 with each input gradient by central differences (float64)."""
    total = 0.0
    for x in images:
        grad = []
        for j in range(x.numel()):
            step = torch.zeros_like(x).view(-1)
            step[j] = h
            step = step.view_as(x)
            grad.append((d(x[None] + step) - d(x[None] - step)).item() / (2 * h))
        total += sum(g * g for g in grad)
    return total / len(images)


def test_r1_and_r2_match_finite_differences_and_train_d_by_their_gradient():
    d = Tiny().double()
    images = torch.rand(3, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    penalty = r1_penalty(d(images), images)
    assert penalty.item() == pytest.approx(finite_difference_penalty(d, images.detach()), rel=1e-6)
    penalty.backward()  # the penalty's gradient on a weight, against moving that weight
    weight, h = d.net[1].weight, 1e-5
    with torch.no_grad():
        weight[0, 0] += h
        up = finite_difference_penalty(d, images.detach(), 1e-4)
        weight[0, 0] -= 2 * h
        down = finite_difference_penalty(d, images.detach(), 1e-4)
        weight[0, 0] += h
    assert weight.grad[0, 0].item() == pytest.approx((up - down) / (2 * h), rel=1e-3)


def test_lazy_regularisation_penalises_every_nth_d_step():
    loss = NonSaturating(r1_gamma=1.0, penalty_every=4)
    assert [loss.penalized(step) for step in range(9)] == [True, False, False, False, True, False, False, False, True]
    assert all(NonSaturating().penalized(step) for step in range(5))
