"""GAN objectives (`loss` group): what D minimises on reals and on fakes, what G minimises,
and the gradient penalties. All take D's raw outputs (logits / critic scores)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gan.config.constraints import Label, NonNegFloat, PosInt


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class Loss:
    """D minimises `d_real(D(x)) + d_fake(D(G(z)))` (+ penalties), G minimises `g(D(G(z)))`.

    `gp_weight` (WGAN-GP's lambda, Gulrajani et al. 2017): weight of the `gradient_penalty`
    E[(||grad D(x^)|| - 1)^2] at random points x^ between paired reals and fakes (added to the
    D step that sees the fakes; the paper's single step is `gan.d_update=joint`). `r1_gamma`
    (R1, Mescheder et al. 2018): adds gamma/2 E[||grad D(x)||^2] on the reals; `r2_gamma` the
    same on the fakes D was shown (R2, as R3GAN pairs them). `penalty_every` (lazy
    regularisation, StyleGAN2): the penalties only on every N-th D step, weighted N times, so
    they cost 1/N as much and weigh the same on average. `class_weight`: with AC-GAN's auxiliary
    classifier (`model.conditioning=auxiliary`), the weight of its cross-entropy, on the reals and
    fakes in D's loss and on the fakes in G's.
    `probabilities`: D's outputs read as P(real) through a sigmoid (the BCE losses); the
    others' outputs are raw scores, logged as they are. `pairs`: D's and G's terms each compare
    a real with a fake (relativistic), so D takes one step on both and G's step sees reals too.
    """

    probabilities = False
    pairs = False

    def __init__(self, gp_weight: NonNegFloat = 0.0, r1_gamma: NonNegFloat = 0.0, r2_gamma: NonNegFloat = 0.0,
                 penalty_every: PosInt = 1, class_weight: NonNegFloat = 1.0):
        self.gp_weight, self.r1_gamma, self.r2_gamma, self.penalty_every = gp_weight, r1_gamma, r2_gamma, penalty_every
        self.class_weight = class_weight

    def penalized(self, d_step: int) -> bool:
        """Whether D step number `d_step` (counting every D step of the run from 0) adds the penalties."""
        return d_step % self.penalty_every == 0

    def d(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D's loss on a real and a fake batch in one step (`gan.d_update=joint`)."""
        return self.d_real(real_logits) + self.d_fake(fake_logits)

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """D's outputs as logged (train/d_real, train/d_fake): P(real) or the raw score."""
        return torch.sigmoid(logits) if self.probabilities else logits

    @property
    def threshold(self) -> float:
        """Where `outputs` says real rather than fake (train/d_acc)."""
        return 0.5 if self.probabilities else 0.0


class Minimax(Loss):
    """Goodfellow et al. 2014 as written: D maximises log D(x) + log(1 - D(G(z))), G minimises
    log(1 - D(G(z))), which saturates (vanishing gradient) while D rejects the fakes.
    `real_label` < 1 is one-sided label smoothing (Salimans et al. 2016) on D's real term."""

    probabilities = True

    def __init__(self, real_label: Label = 1.0, **penalties):
        super().__init__(**penalties)
        self.real_label = real_label

    def d_real(self, logits):
        return bce(logits, self.real_label)

    def d_fake(self, logits):
        return bce(logits, 0.0)

    def g(self, logits):
        return -bce(logits, 0.0)  # log(1 - D(G(z))) = -softplus(logit)


class NonSaturating(Minimax):
    """The paper's practical variant and the Keras example's: G maximises log D(G(z)) (labels 1)."""

    def g(self, logits):
        return bce(logits, 1.0)


class LeastSquares(Loss):
    """LSGAN (Mao et al. 2017), the a=0, b=c=1 coding: D minimises 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2,
    G minimises 1/2 (D(G(z)) - 1)^2, on D's linear output. `real_label` is b."""

    def __init__(self, real_label: Label = 1.0, **penalties):
        super().__init__(**penalties)
        self.real_label = real_label

    def d_real(self, logits):
        return 0.5 * (logits - self.real_label).pow(2).mean()

    def d_fake(self, logits):
        return 0.5 * logits.pow(2).mean()

    def g(self, logits):
        return 0.5 * (logits - 1.0).pow(2).mean()

    @property
    def threshold(self) -> float:
        return 0.5


class Hinge(Loss):
    """Lim & Ye 2017, SNGAN: D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], G minimises -E[D(G(z))]."""

    def d_real(self, logits):
        return F.relu(1.0 - logits).mean()

    def d_fake(self, logits):
        return F.relu(1.0 + logits).mean()

    def g(self, logits):
        return -logits.mean()


class Wasserstein(Loss):
    """WGAN critic (Arjovsky et al. 2017): D minimises E[D(G(z))] - E[D(x)], G minimises -E[D(G(z))].
    The Lipschitz constraint comes from `gp_weight` (WGAN-GP) or spectral norm."""

    def d_real(self, logits):
        return -logits.mean()

    def d_fake(self, logits):
        return logits.mean()

    def g(self, logits):
        return -logits.mean()


class RelativisticPairing(Loss):
    """RpGAN (Jolicoeur-Martineau 2019) as R3GAN uses it (Huang et al. 2024): D minimises
    softplus(D(fake) - D(real)) over pairs of a real and a fake, G minimises
    softplus(D(real) - D(fake)). With R1 and R2 it converges locally (the R3GAN paper's result)."""

    pairs = True

    def d(self, real_logits, fake_logits):
        return F.softplus(fake_logits - real_logits).mean()

    def g(self, fake_logits, real_logits):
        return F.softplus(real_logits - fake_logits).mean()

    def d_real(self, logits):
        raise TypeError("RpGAN has no loss on reals alone: D takes one step on the pairs")

    d_fake = d_real


HALF = (torch.float16, torch.bfloat16)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 when autocast (or a `*-true` precision) made it half precision, so that
    losses and penalties sum in float32; float32 and float64 stay as they are."""
    return x.float() if x.dtype in HALF else x


def input_gradient(output: torch.Tensor, inputs: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """d(sum of output)/d(inputs), kept in the graph so a penalty on it trains D. `scale`: a
    gradient scaler's scale (16-mixed), applied to the output and taken off the gradient, so the
    half-precision backward pass runs on scaled values as the loss's own does."""
    total = output.sum() if scale is None else at_least_float32(output).sum() * scale
    (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
    grad = at_least_float32(grad)
    return (grad if scale is None else grad / scale).flatten(1)


def gradient_penalty(discriminator: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None = None, mix: torch.Tensor | None = None,
                     scale: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad_x D(x^)||_2 - 1)^2], x^ = e x + (1 - e) x~ with e ~ U(0, 1) per pair (`mix`, drawn
    here when not given); `scale` as for `input_gradient`."""
    if mix is None:
        mix = torch.rand(len(real), device=real.device)
    eps = mix.to(real.dtype).view(len(real), *[1] * (real.dim() - 1))
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = input_gradient(discriminator(mixed, labels), mixed, scale)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(logits: torch.Tensor, images: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """E[||grad_x D(x)||^2] over the images (the reals for R1, the fakes for R2); `images` must
    require grad before D saw them; `scale` as for `input_gradient`."""
    return input_gradient(logits, images, scale).pow(2).sum(1).mean()
