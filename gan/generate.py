"""Write samples of a checkpoint's (or a run folder's last checkpoint's) generator.

`out` ending in .png writes a grid (sqrt(n) per row); ending in .npy writes the n samples as
float32 in [-1, 1], shaped n x C x H x W. A conditional generator draws class `label`, or
every class in turn when no label is given. An existing file is replaced only with
`overwrite=true`, and then whole (written beside it, then renamed over it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from torchvision.utils import save_image

from gan.config.cli import run
from gan.config.untrusted import config_dirs
from gan.errors import UserError
from gan.files import write_atomically
from gan.run.checkpoints.files import load_generator
from gan.samples import generate


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, or a run folder (its checkpoints/last.ckpt)
    n: int = 64  # how many samples
    out: str = "samples.png"  # .png: a grid; .npy: the raw samples
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    seed: int = 0  # the noise: same seed, same samples
    label: Optional[int] = None  # conditional runs: the class to draw (null: every class in turn)
    ema: bool = True  # a run with gan.ema_decay: the weight average (false: the trained generator)
    overwrite: bool = False  # replace `out` if it exists (false: refuse, so nothing already there is lost)
    config_dir: Optional[str] = None  # your own config folder, whose options' classes may be rebuilt too (as --config-dir)


def write(args: Args) -> Path:
    out = Path(args.out).expanduser()
    if out.suffix not in (".png", ".npy") or args.n < 1:
        raise UserError(f"out={args.out} n={args.n}: out must end in .png or .npy and n be at least 1.")
    if os.path.lexists(out) and not (args.overwrite and out.is_file()):
        what = "is a folder" if out.is_dir() else "exists" if out.exists() else "is a link to nowhere"
        raise UserError(f"out={args.out} {what}: give a new file name, or overwrite=true to replace a file.")
    generator, _, _ = load_generator(args.ckpt, args.best, args.ema, config_dirs(args.config_dir))
    samples = generate(generator, args.n, args.seed, args.label)
    try:  # a link at `out` is replaced, never followed
        if out.suffix == ".npy":
            write_atomically(out, lambda f: np.save(f, samples.numpy().astype(np.float32)))
        else:
            write_atomically(out, lambda f: save_image(samples, f, format="png", nrow=math.ceil(math.sqrt(args.n)),
                                                       normalize=True, value_range=(-1, 1)))
    except OSError as exc:
        raise UserError(f"out={args.out}: cannot write there ({exc.strerror or exc}); give a path you can write to.") from None
    return out


def main() -> None:
    print(run(write, Args, __doc__))


if __name__ == "__main__":
    main()
