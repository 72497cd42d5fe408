"""Look at what a checkpoint's generator (or a run folder's last one, or a .safetensors from
gan.export) makes.

mode=grid (the default): n samples of one noise seed as a grid (.png), or the samples themselves
(.npy: float32 in [-1, 1], n x C x H x W). A conditional generator draws class `label`, or every
class in turn.
mode=walk: an animation (.gif, .webp, .mp4) through the noise of `seeds`, `frames` per step from
one to the next (spherical for normal noise, straight for uniform), each frame a grid of n
samples; the frame at each seed is bit for bit the grid of mode=grid seed=<that seed> (GIF: grey
images exactly, colour in 256 colours; WebP: lossless, exactly; MP4: H.264, needs imageio-ffmpeg
or ffmpeg). Frames are made a batch at a time and written as they come: memory stays flat however
long the walk.
mode=classes: a conditional generator's sheet, one row per class (or per class of `classes`,
named or numbered), the same noise down each column, each row named.
mode=nearest: n samples, each beside its k nearest training images in pixels and in the feature
classifier's features (labelled data), distances written under them: the memorisation check as a
person looks at it.
`truncation=psi` pulls the noise toward its mean in every mode (psi=1: as trained).
An existing `out` is replaced only with `overwrite=true`, and then whole.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from gan.animations import check as check_animation
from gan.animations import write_animation
from gan.config.cli import run
from gan.config.untrusted import config_dirs
from gan.errors import UserError
from gan.files import write_atomically
from gan.run.checkpoints.files import Trained, datamodule_of, load_trained
from gan.samples import balanced_labels, check_truncation, generate, truncated, walk, walk_length

MODES = ("grid", "walk", "classes", "nearest")
SUFFIXES = {"grid": (".png", ".npy"), "walk": (".gif", ".webp", ".mp4"), "classes": (".png",), "nearest": (".png",)}
# each mode's own keys, with the value null stands for
OWN_KEYS = {"walk": {"seeds": [0, 1, 2, 3], "frames": 30, "fps": 30, "loop": True},
            "classes": {"classes": None}, "nearest": {"k": 3, "data_root": None}}
DEFAULT_N = {"grid": 64, "walk": 64, "classes": 8, "nearest": 8}
SHEET_WIDTH = 900  # pixels: class and nearest sheets are enlarged (whole pixels) to about this width


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, a run folder (its checkpoints/last.ckpt), or a .safetensors from gan.export
    mode: str = "grid"  # grid | walk | classes | nearest (above)
    out: Optional[str] = None  # the file to write (null: samples.png, walk.gif, classes.png or nearest.png)
    n: Optional[int] = None  # grid and walk: samples (64); classes: columns (8); nearest: samples, a row each (8)
    seed: int = 0  # the noise: same seed, same samples
    truncation: float = 1.0  # psi in (0, 1]: the noise pulled toward its mean, fewer odd samples, less variety (1: off)
    label: Optional[int] = None  # grid and walk, conditional runs: the class to draw (null: every class in turn)
    seeds: Optional[list[int]] = None  # walk: the seeds it passes through, in order, at least 2 (null: 0,1,2,3)
    frames: Optional[int] = None  # walk: frames from one seed to the next (null: 30)
    fps: Optional[int] = None  # walk: frames per second (null: 30; a GIF keeps at most 50)
    loop: Optional[bool] = None  # walk: head back to the first seed so the animation repeats seamlessly (null: true)
    classes: Optional[list[str]] = None  # classes: which rows, by number or name (null: every class)
    k: Optional[int] = None  # nearest: training images shown per space, pixels and features (null: 3)
    data_root: Optional[str] = None  # nearest: where the training images lie (null: as gan.evaluate finds them)
    scale: Optional[int] = None  # enlarge each image this many times, whole pixels (null: 1; sheets: to about 900 px)
    device: str = "cpu"  # where G runs, a batch at a time: cpu | cuda | cuda:N (the same device gives the same pixels)
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    ema: bool = True  # a run with gan.ema_decay: the weight average (false: the trained generator)
    overwrite: bool = False  # replace `out` if it exists (false: refuse, so nothing already there is lost)
    config_dir: Optional[str] = None  # your own config folder, whose options' classes may be rebuilt too (as --config-dir)


def checked(args: Args) -> tuple[Args, Path]:
    """The arguments with each mode's defaults filled in, and the output path; everything a user
    can get wrong is said here, before the checkpoint is read."""
    if args.mode not in MODES:
        raise UserError(f"mode={args.mode}: the modes are {', '.join(MODES)}.")
    for mode, keys in OWN_KEYS.items():
        for key, default in keys.items():
            given = getattr(args, key)
            if mode != args.mode and given is not None:
                raise UserError(f"{key}={given}: a key of mode={mode}, not of mode={args.mode}; leave it out, or "
                                f"give mode={mode}.")
            if mode == args.mode and given is None:
                setattr(args, key, default)
    args.n = DEFAULT_N[args.mode] if args.n is None else args.n
    if args.n < 1:
        raise UserError(f"n={args.n}: how many samples (mode=classes: columns), 1 or more.")
    if args.scale is not None and args.scale < 1:
        raise UserError(f"scale={args.scale}: a whole number of times, 1 or more.")
    if args.seed < 0:
        raise UserError(f"seed={args.seed}: a seed is 0 or more.")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UserError(f"device={args.device}: cpu, cuda or cuda:N.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={args.device}: this machine has no CUDA device torch can use; device=cpu runs anywhere.")
    check_truncation(args.truncation)
    if args.label is not None and args.mode not in ("grid", "walk"):
        raise UserError(f"label={args.label}: mode=grid and mode=walk draw one class; mode={args.mode} does not take it "
                        f"(mode=classes: classes=[...]).")
    if args.mode == "walk":
        if len(args.seeds) < 2:
            raise UserError(f"seeds={args.seeds}: a walk goes from one seed to another: give at least 2 "
                            f"(seeds=[0,1,2,3]).")
        if any(s < 0 for s in args.seeds):
            raise UserError(f"seeds={args.seeds}: seeds are 0 or more.")
        if args.frames < 1:
            raise UserError(f"frames={args.frames}: at least 1 frame from one seed to the next.")
    if args.mode == "nearest" and args.k < 1:
        raise UserError(f"k={args.k}: at least 1 training image per space.")
    out = Path(args.out or {"grid": "samples.png", "walk": "walk.gif", "classes": "classes.png",
                            "nearest": "nearest.png"}[args.mode]).expanduser()
    if out.suffix.lower() not in SUFFIXES[args.mode]:
        raise UserError(f"out={out}: mode={args.mode} writes {' or '.join(SUFFIXES[args.mode])} (got "
                        f"{out.suffix or 'no suffix'}).")
    if args.mode == "walk":
        check_animation(out, args.fps)
    if os.path.lexists(out) and not (args.overwrite and out.is_file()):
        what = "is a folder" if out.is_dir() else "exists" if out.exists() else "is a link to nowhere"
        raise UserError(f"out={out} {what}: give a new file name, or overwrite=true to replace a file.")
    if not out.parent.exists() and out.parent != Path(""):
        raise UserError(f"out={out}: the folder {out.parent} does not exist.")
    if not os.access(out.parent if str(out.parent) else ".", os.W_OK):
        raise UserError(f"out={out}: the folder {out.parent} is not writable; give a path you can write to.")
    return args, out


def picture(samples: torch.Tensor, nrow: int, pad_value: float = 0) -> np.ndarray:
    """Samples in [-1, 1] as the H x W x 3 uint8 grid torchvision's save_image writes (2 px black
    between images): a walk's frame and a grid PNG of the same samples are the same pixels."""
    grid = make_grid(samples, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=pad_value)
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()


def enlarged(image: np.ndarray, scale: int) -> np.ndarray:
    return image if scale == 1 else image.repeat(scale, axis=0).repeat(scale, axis=1)


def columns(n: int) -> int:
    return math.ceil(math.sqrt(n))


def write_grid(trained: Trained, args: Args, out: Path) -> str:
    generator = truncated(trained.generator, args.truncation)
    samples = generate(generator, args.n, args.seed, args.label)
    if out.suffix == ".npy":
        write_atomically(out, lambda f: np.save(f, samples.numpy().astype(np.float32)))
        return f"{args.n} samples"
    image = Image.fromarray(enlarged(picture(samples, columns(args.n)), args.scale or 1))
    write_atomically(out, lambda f: image.save(f, format="png"))
    return f"{args.n} samples"


@torch.no_grad()
def walk_frames(trained: Trained, args: Args, batch: int = 512):
    """The walk's frames in order: the grid at each seed made exactly as mode=grid makes it, those
    between made several frames to a batch on the generator's device."""
    generator = truncated(trained.generator, args.truncation)
    keys = [generator.draw_noise(args.n, torch.Generator().manual_seed(s)) for s in args.seeds]
    labels = balanced_labels(args.n, generator.num_classes, args.label)
    parameter = next(generator.parameters())
    pending: list[torch.Tensor] = []

    def flush():
        z = torch.cat(pending).to(parameter.device, parameter.dtype)
        y = None if labels is None else labels.repeat(len(pending)).to(parameter.device)
        images = generator(z, y).float().cpu()
        pending.clear()
        for frame in images.split(args.n):
            yield enlarged(picture(frame, columns(args.n)), args.scale or 1)

    per_batch = max(1, batch // args.n)
    for z, key in walk(keys, args.frames, args.loop, spherical=generator.noise == "normal"):
        if key is not None:
            yield from flush() if pending else ()
            samples = generate(generator, args.n, args.seeds[key], args.label)  # as mode=grid seed=<key>
            yield enlarged(picture(samples, columns(args.n)), args.scale or 1)
            continue
        pending.append(z)
        if len(pending) == per_batch:
            yield from flush()
    if pending:
        yield from flush()


def write_walk(trained: Trained, args: Args, out: Path) -> str:
    count = walk_length(len(args.seeds), args.frames, args.loop)
    how = write_animation(out, walk_frames(trained, args), count, args.fps)
    return f"{count} frames at {args.fps} fps ({count / args.fps:.2f} s), {how}"


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def wrapped(text: str, width: int, face: ImageFont.ImageFont) -> list[str]:
    """`text` in lines no wider than `width` pixels (broken between words)."""
    measure = ImageDraw.Draw(Image.new("L", (1, 1))).textlength
    lines = [""]
    for word in text.split():
        line = f"{lines[-1]} {word}".strip()
        if lines[-1] and measure(line, font=face) > width:
            lines.append(word)
        else:
            lines[-1] = line
    return lines


def sheet(rows: list[np.ndarray], names: list[str], caption: str,
          under: list[list[tuple[int, str]]] | None = None) -> Image.Image:
    """Rows of pictures (H x W x 3 uint8, one height) stacked on white, each row's name at its left,
    `caption` on top (wrapped to the sheet's width), and under each row an optional line of small
    texts at the given x positions."""
    text, title = font(16), font(18)
    measure = ImageDraw.Draw(Image.new("L", (1, 1))).textlength
    left = 12 + max((int(measure(n, font=text)) for n in names), default=0)
    row_h, width = rows[0].shape[0], left + max(r.shape[1] for r in rows) + 8
    lines = wrapped(caption, width - 16, title)
    top, gap = 12 + 24 * len(lines), 20 if under else 6
    canvas = Image.new("RGB", (width, top + len(rows) * (row_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((8, 6 + 24 * i), line, fill="black", font=title)
    for i, (row, name) in enumerate(zip(rows, names)):
        y = top + i * (row_h + gap)
        canvas.paste(Image.fromarray(row), (left, y))
        draw.text((6, y + row_h // 2 - 9), name, fill="black", font=text)
        for x, words in (under[i] if under else []):
            draw.text((left + x, y + row_h + 2), words, fill="dimgray", font=font(12))
    return canvas


def sheet_scale(args: Args, width: int) -> int:
    return args.scale or max(1, round(SHEET_WIDTH / width))


def chosen_classes(trained: Trained, asked: list[str] | None) -> list[int]:
    """The classes `asked` names, by number, by name, or by the part of a name after ` - ` (MNIST's
    `5 - five`: five), in any case."""
    names = trained.class_names or []
    if asked is None:
        return list(range(len(names)))
    found = []
    for item in asked:
        text = str(item).strip()
        matches = [i for i, name in enumerate(names) if text.lower() in (name.lower(), name.split(" - ")[-1].lower())]
        if text.isdigit() and int(text) < len(names):
            found.append(int(text))
        elif matches:
            found.append(matches[0])
        else:
            raise UserError(f"classes: {text} is neither a class number (0 to {len(names) - 1}) nor a class name of "
                            f"this generator ({', '.join(names[:12])}{', ...' if len(names) > 12 else ''}).")
    return found


def row_name(names: list[str], c: int) -> str:
    """`3: cat`, or the name alone when it starts with its number (MNIST's `3 - three`)."""
    return names[c] if names[c].split(" ")[0] == str(c) else f"{c}: {names[c]}"


def class_rows(trained: Trained, args: Args) -> tuple[list[int], torch.Tensor]:
    """The classes shown and their samples (classes x n x C x H x W): one noise, drawn as mode=grid
    draws it, under each class's label, so a row is mode=grid label=<class> bit for bit."""
    generator = truncated(trained.generator, args.truncation)
    wanted = chosen_classes(trained, args.classes)
    return wanted, torch.stack([generate(generator, args.n, args.seed, c) for c in wanted])


def write_classes(trained: Trained, args: Args, out: Path) -> str:
    wanted, samples = class_rows(trained, args)
    rows = [picture(row, args.n) for row in samples]
    scale = sheet_scale(args, rows[0].shape[1])
    psi = "" if args.truncation == 1 else f", truncation {args.truncation:g}"
    image = sheet([enlarged(r, scale) for r in rows], [row_name(trained.class_names, c) for c in wanted],
                  f"one row per class, the same noise down each column (seed {args.seed}{psi})")
    write_atomically(out, lambda f: image.save(f, format="png"))
    return f"{len(wanted)} classes x {args.n} samples"


def as_bytes(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as the uint8 pixels a PNG of them holds (picture's rounding)."""
    return ((images.clamp(-1, 1) + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def neighbours(trained: Trained, args: Args) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The samples (as the PNG's 8-bit pixels), the training images, and per space (pixels; features
    of the feature classifier, for labelled data) each sample's k nearest training images'
    distances and indices (n x k): the search the memorisation check makes (gan/metrics/memorisation.py)."""
    from gan.metrics.memorisation import nearest

    if "data" not in trained.config.values:
        raise UserError(f"ckpt={args.ckpt}: mode=nearest needs the training images, and an exported generator does "
                        f"not say what they were; give the run's checkpoint.")
    samples = as_bytes(generate(truncated(trained.generator, args.truncation), args.n, args.seed))
    datamodule = datamodule_of(trained.config, args.data_root, config_dirs(args.config_dir))
    datamodule.prepare_data()
    train = datamodule.split(train=True)[0]
    spaces = {"pixels": nearest(samples.flatten(1), train.flatten(1), k=args.k)}
    if datamodule.labelled:
        from gan.metrics.evaluator import Evaluator

        evaluator = Evaluator(datamodule)
        own, theirs = evaluator.features(samples)["conv"], evaluator.split_features(train=True)["conv"]
        spaces["features"] = nearest(own, theirs, k=args.k)
    return samples, train, {name: (d.reshape(args.n, -1), i.reshape(args.n, -1)) for name, (d, i) in spaces.items()}


def write_nearest(trained: Trained, args: Args, out: Path) -> str:
    """Each sample, then its k nearest training images in pixels (the PNG's 8-bit values: a planted
    copy reads 0) and, for labelled data, in the feature classifier's features; distances under them."""
    from gan.data import to_unit

    samples, train, spaces = neighbours(trained, args)
    blank = torch.ones(1, *samples.shape[1:])  # white, between the sample and each space's neighbours
    cells = 1 + len(spaces) * (1 + args.k)
    scale = sheet_scale(args, cells * (samples.shape[-1] + 2))
    rows, under = [], []
    for i in range(args.n):
        row, words = [to_unit(samples[i:i + 1])], []
        for name, (distances, indices) in spaces.items():
            first = sum(len(part) for part in row) + 1
            row += [blank, to_unit(train[indices[i]])]
            words += [(first + j, f"{name[0]} {d:.0f}" if name == "pixels" else f"{name[0]} {d:.3g}")
                      for j, d in enumerate(distances[i].tolist())]
        rows.append(enlarged(picture(torch.cat(row), cells, pad_value=1), scale))
        under.append([((2 + cell * (samples.shape[-1] + 2)) * scale, text) for cell, text in words])
    note = "" if "features" in spaces else " (unlabelled data: no feature classifier, pixels only)"
    caption = (f"each sample (left), its {args.k} nearest training images in {' and in '.join(spaces)} "
               f"(p: pixel distance, f: feature distance){note}")
    image = sheet(rows, [str(i) for i in range(args.n)], caption, under)
    write_atomically(out, lambda f: image.save(f, format="png"))
    return f"{args.n} samples beside their nearest training images in {' and '.join(spaces)}"


WRITERS = {"grid": write_grid, "walk": write_walk, "classes": write_classes, "nearest": write_nearest}


def write(args: Args) -> Path:
    args, out = checked(args)
    trained = load_trained(args.ckpt, args.best, args.ema, config_dirs(args.config_dir))
    trained.generator.to(args.device)
    if args.mode == "classes" and trained.generator.num_classes is None:
        raise UserError(f"mode=classes: {trained.path} holds an unconditional generator (model.conditional=false): "
                        f"it has no classes to show. mode=grid shows its samples.")
    if args.label is not None:
        balanced_labels(1, trained.generator.num_classes, args.label)  # an unconditional one, or no such class: said
    try:
        what = WRITERS[args.mode](trained, args, out)
    except OSError as exc:
        raise UserError(f"out={args.out}: cannot write there ({exc.strerror or exc}); give a path you can write to.") from None
    print(f"{out}: {what}", file=sys.stderr)
    return out


def main() -> None:
    print(run(write, Args, __doc__))


if __name__ == "__main__":
    main()
