"""ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"): the
paper's `bgc` pipeline of geometric and colour transforms, each applied to an image with
probability p, and p steered so that D's overfitting heuristic r_t = E[sign(D(real))] stays at
a target.

As in stylegan2-ada-pytorch (training/augment.py, training/training_loop.py), read for the facts:
- the transforms, in order: x-flip, 90-degree rotations, integer translation (up to 1/8 of the
  side), isotropic scaling (log2 std 0.2), rotation (any angle; applied before and after the
  anisotropic scaling, each with probability 1 - sqrt(1 - p)), anisotropic scaling (log2 std
  0.2), fractional translation (std 1/8 of the side); brightness (std 0.2), contrast (log2 std
  0.5), luma flip, hue rotation (any angle), saturation (log2 std 1). The geometric ones compose
  into one affine map, the colour ones into one colour matrix;
- every `interval` iterations p <- p + sign(r_t - target) * (reals seen) / (kimg * 1000), so p
  can go from 0 to 1 within `kimg` thousand reals; r_t is over the reals since the last change.

What differs: the image is resampled bilinearly (the paper upsamples with a wavelet filter
first), from a gather written here, so that p = 0, flips, 90-degree turns and integer moves are
exact pixel copies; borders are mirrored, as the paper pads. Grey images get no luma flip, hue
or saturation: a grey image's luma flip is its negative, another kind of image (on MNIST the
generator learnt to draw some white-background digits from it), and the others mean nothing.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist

from gan.augment.base import Augment
from gan.config.constraints import Fraction, NonNegFloat, PosFloat, PosInt

TRANSFORMS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
              "brightness", "contrast", "lumaflip", "hue", "saturation")
COLOUR_ONLY = ("lumaflip", "hue", "saturation")  # what grey images skip (a grey luma flip is the negative image)
# One gate per application, in the order applied (the rotation comes twice).
GATES = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "rotate", "xfrac",
         "brightness", "contrast", "lumaflip", "hue", "saturation")
UNIFORMS = 8  # xflip, rotate90, xint (2), rotation before and after aniso, luma flip, hue
NORMALS = 7  # scale, aniso, xfrac (2), brightness, contrast, saturation


class AdaDraws(NamedTuple):
    """Per image: one uniform per gate (applied when below its probability) and the uniforms
    and normals the transforms take their parameters from."""

    gate: torch.Tensor  # (N, len(GATES))
    uniform: torch.Tensor  # (N, UNIFORMS)
    normal: torch.Tensor  # (N, NORMALS)


def mirrored(s: torch.Tensor, size: int) -> torch.Tensor:
    """Coordinate `s` (in pixels) mirrored into [0, size - 1] about the edge pixels' centres
    (numpy's `reflect` padding). Bilinear reading of the mirrored image at s is bilinear reading
    of the image at the mirrored s, since the mirror lines pass through pixel centres."""
    if size == 1:
        return torch.zeros_like(s)
    edge = size - 1
    return edge - (s.remainder(2 * edge) - edge).abs()


def resample(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) seen through the affine maps `inverse` (N, 3, 3), which take an output
    pixel's coordinates (columns, rows, 1; origin at the image's centre) to where it is read in
    the input. Bilinear, from one gather of the four neighbours: linear in x (any order of
    gradient flows), and an identity, flip or integer move reads whole pixels with weight exactly 1."""
    n, c, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device) - cy,
                            torch.arange(w, dtype=x.dtype, device=x.device) - cx, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten(), torch.ones_like(gx.flatten())])  # (3, H*W)
    source = inverse[:, :2].to(x.dtype) @ grid  # (N, 2, H*W)
    sx, sy = mirrored(source[:, 0] + cx, w), mirrored(source[:, 1] + cy, h)
    x0, y0 = sx.floor(), sy.floor()
    fx, fy = (sx - x0).unsqueeze(1), (sy - y0).unsqueeze(1)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    corners = torch.cat([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], dim=1)  # (N, 4 H*W)
    read = x.reshape(n, c, h * w).gather(2, corners.unsqueeze(1).expand(n, c, 4 * h * w)).view(n, c, 4, h * w)
    top = read[:, :, 0] * (1 - fx) + read[:, :, 1] * fx
    bottom = read[:, :, 2] * (1 - fx) + read[:, :, 3] * fx
    return (top * (1 - fy) + bottom * fy).view(n, c, h, w)


class ADA(Augment):
    """Adaptive discriminator augmentation; `target=null` keeps p fixed at `p`."""

    def __init__(self, transforms: list[Literal[TRANSFORMS]] = TRANSFORMS, p: Fraction = 0.0,
                 target: Fraction | None = 0.6, kimg: PosFloat = 100.0, interval: PosInt = 4,
                 xint_max: Fraction = 0.125, scale_std: NonNegFloat = 0.2, rotate_max: Fraction = 1.0,
                 aniso_std: NonNegFloat = 0.2, xfrac_std: NonNegFloat = 0.125, brightness_std: NonNegFloat = 0.2,
                 contrast_std: NonNegFloat = 0.5, hue_max: Fraction = 1.0, saturation_std: NonNegFloat = 1.0):
        super().__init__()
        self.transforms = tuple(t for t in TRANSFORMS if t in transforms)
        self.target, self.kimg, self.interval = target, kimg, interval
        self.xint_max, self.scale_std, self.rotate_max, self.aniso_std = xint_max, scale_std, rotate_max, aniso_std
        self.xfrac_std, self.brightness_std, self.contrast_std = xfrac_std, brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.tensor(float(p)))  # the probability of each transform: state, in checkpoints
        self.register_buffer("rt", torch.tensor(0.0))  # r_t at the last adjustment
        self.register_buffer("signs", torch.zeros(2))  # sum of sign(D(real)) and the reals counted, since then
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self.register_buffer("enabled", torch.tensor([float(g in self.transforms) for g in GATES]), persistent=False)
        self.register_buffer("rotates", torch.tensor([g == "rotate" for g in GATES]), persistent=False)

    def describe(self, channels: int) -> str:
        used = [t for t in self.transforms if channels == 3 or t not in COLOUR_ONLY]
        skipped = [t for t in self.transforms if t not in used]
        how = (f"p from {self.p.item():g}, steered to r_t = {self.target} every {self.interval} iterations "
               f"({self.kimg:g} kimg from 0 to 1)" if self.target is not None else f"fixed p = {self.p.item():g}")
        return f"ADA ({how}): {', '.join(used)}" + (f"; not {', '.join(skipped)} (grey images)" if skipped else "")

    def draw(self, n: int, size: tuple[int, int], rng: torch.Generator, device: torch.device) -> AdaDraws:
        return AdaDraws(torch.rand(n, len(GATES), generator=rng, device=device),
                        torch.rand(n, UNIFORMS, generator=rng, device=device),
                        torch.randn(n, NORMALS, generator=rng, device=device))

    def forward(self, x: torch.Tensor, d: AdaDraws | None) -> torch.Tensor:
        if d is None:
            return x
        chance = self.p * self.enabled
        chance = torch.where(self.rotates, 1 - (1 - chance).clamp(0, 1).sqrt(), chance)  # twice: p in all
        on = d.gate < chance.to(d.gate.dtype)
        return self.colour(self.geometric(x, on, d), on, d)

    def geometric(self, x: torch.Tensor, on: torch.Tensor, d: AdaDraws) -> torch.Tensor:
        """One affine map per image, from output pixels to where they are read: the inverse of
        each transform, composed in the paper's order."""
        n, _, h, w = x.shape
        u, g = d.uniform.to(x.dtype), d.normal.to(x.dtype)
        zero, one = torch.zeros_like(u[:, 0]), torch.ones_like(u[:, 0])
        m = torch.eye(3, dtype=x.dtype, device=x.device).repeat(n, 8, 1, 1)  # (N, 8 maps, 3, 3)

        def rotate(k: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
            m[:, k, :2, :2] = torch.stack([cos, -sin, sin, cos], dim=-1).view(n, 2, 2)

        flip = torch.where(on[:, 0], (u[:, 0] * 2).floor(), zero)
        m[:, 0, 0, 0] = 1 - 2 * flip
        quarter = torch.where(on[:, 1], (u[:, 1] * 4).floor(), zero)  # exact sines and cosines of k * 90 degrees
        is_ = lambda k: (quarter == k).to(x.dtype)
        rotate(1, is_(0) - is_(2), is_(1) - is_(3))
        shift = torch.where(on[:, 2:3], (u[:, 2:4] * 2 - 1) * self.xint_max, zero[:, None])
        m[:, 2, 0, 2], m[:, 2, 1, 2] = -(shift[:, 0] * w).round(), -(shift[:, 1] * h).round()
        s = torch.where(on[:, 3], torch.exp2(g[:, 0] * self.scale_std), one)
        m[:, 3, 0, 0], m[:, 3, 1, 1] = 1 / s, 1 / s
        theta = torch.where(on[:, 4], (u[:, 4] * 2 - 1) * math.pi * self.rotate_max, zero)
        rotate(4, theta.cos(), theta.sin())
        s = torch.where(on[:, 5], torch.exp2(g[:, 1] * self.aniso_std), one)
        m[:, 5, 0, 0], m[:, 5, 1, 1] = 1 / s, s
        theta = torch.where(on[:, 6], (u[:, 5] * 2 - 1) * math.pi * self.rotate_max, zero)
        rotate(6, theta.cos(), theta.sin())
        shift = torch.where(on[:, 7:8], g[:, 2:4] * self.xfrac_std, zero[:, None])
        m[:, 7, 0, 2], m[:, 7, 1, 2] = -shift[:, 0] * w, -shift[:, 1] * h
        inverse = m[:, 0]
        for k in range(1, 8):
            inverse = inverse @ m[:, k]
        return resample(x, inverse)

    def colour(self, x: torch.Tensor, on: torch.Tensor, d: AdaDraws) -> torch.Tensor:
        """The brightness offset, then one C x C colour matrix per image: contrast, luma flip,
        hue rotation and saturation about the luma axis v (all linear, composed in the paper's order)."""
        n, c, h, w = x.shape
        u, g = d.uniform.to(x.dtype), d.normal.to(x.dtype)
        per_image = lambda t: t.view(n, 1, 1)
        eye = torch.eye(c, dtype=x.dtype, device=x.device)
        v = torch.full((c,), c ** -0.5, dtype=x.dtype, device=x.device)
        vv = torch.outer(v, v)
        brightness = torch.where(on[:, 8], g[:, 4] * self.brightness_std, torch.zeros_like(g[:, 4]))
        contrast = torch.where(on[:, 9], torch.exp2(g[:, 5] * self.contrast_std), torch.ones_like(g[:, 5]))
        colours = eye * per_image(contrast)
        if c == 3:
            flip = torch.where(on[:, 10], (u[:, 6] * 2).floor(), torch.zeros_like(u[:, 6]))
            colours = (eye - 2 * per_image(flip) * vv) @ colours
            theta = torch.where(on[:, 11], (u[:, 7] * 2 - 1) * math.pi * self.hue_max, torch.zeros_like(u[:, 7]))
            cross = c ** -0.5 * torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=x.dtype, device=x.device)  # [v]x
            hue = eye + per_image(theta.sin()) * cross + per_image(1 - theta.cos()) * (vv - eye)  # Rodrigues
            saturation = torch.where(on[:, 12], torch.exp2(g[:, 6] * self.saturation_std), torch.ones_like(g[:, 6]))
            colours = (eye + per_image(saturation - 1) * (eye - vv)) @ hue @ colours
        shifted = x + brightness.view(n, 1, 1, 1)
        return (colours @ shifted.reshape(n, c, h * w)).view(n, c, h, w)

    def adapt(self, real_logits: list[torch.Tensor]) -> None:
        """Count sign(D(real)); every `interval` iterations move p by the paper's step towards
        the target. All on the device, no host synchronisation (p is read by the next batch);
        with several processes the counts are summed over them first."""
        if self.target is None:
            return
        logits = torch.cat(real_logits).detach()
        counts = torch.stack([logits.sign().sum(), logits.new_full((), logits.numel())]).to(self.signs.dtype)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)  # every process keeps the global counts: a checkpoint resumes on any number
        self.signs.add_(counts)
        self.iterations.add_(1)
        due = self.iterations % self.interval == 0
        rt = self.signs[0] / self.signs[1]
        step = torch.sign(rt - self.target) * self.signs[1] / (self.kimg * 1000)
        self.p.copy_(torch.where(due, (self.p + step).clamp(0, 1), self.p))
        self.rt.copy_(torch.where(due, rt, self.rt))
        self.signs.mul_(~due)

    def scalars(self) -> dict[str, torch.Tensor]:
        if self.target is None:
            return {"train/aug_p": self.p.clone()}
        return {"train/aug_p": self.p.clone(), "train/ada_rt": self.rt.clone()}
