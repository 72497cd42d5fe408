"""Watch a run train: its sample grids (`<run>/images/<iteration>.png`, the same fixed noise each
time, the iteration written on each) in order, as one animation (.gif, .webp or .mp4).

`python -m gan.timelapse run=<run folder> out=training.gif fps=8` reads the grids one at a time
and writes each as it is read (memory flat in the number of grids); the last one stays on screen
for `hold` seconds. Grids of different sizes (a resume that changed the grid) are centred on
a white canvas of the largest. `every=k` keeps every k-th grid (and always the last).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from gan.animations import check, write_animation
from gan.config.cli import run as run_command
from gan.errors import UserError

GRID = re.compile(r"^(\d{6,})\.png$")  # the sample callback's names: the iteration in 6 digits (gan/callbacks.py)


@dataclass
class Args:
    run: str = "???"  # a run folder (its images/), or a folder of grids named by iteration (000200.png, ...)
    out: Optional[str] = None  # the animation to write (null: <run>/timelapse.gif)
    fps: int = 8  # grids per second
    hold: float = 1.0  # seconds the last grid stays on screen
    every: int = 1  # keep every k-th grid (the last is always kept)
    overwrite: bool = False  # replace `out` if it exists (false: refuse)


def grids(folder: Path) -> list[Path]:
    """The folder's grids, in iteration order."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := GRID.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def frames(paths: list[Path], size: tuple[int, int], repeat_last: int) -> Iterator[np.ndarray]:
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            grid = image.convert("RGB")
        if grid.size != size:
            canvas = Image.new("RGB", size, "white")
            canvas.paste(grid, ((size[0] - grid.width) // 2, (size[1] - grid.height) // 2))
            grid = canvas
        frame = np.asarray(grid)
        for _ in range(1 + (repeat_last if i == len(paths) - 1 else 0)):
            yield frame


def timelapse(args: Args) -> Path:
    folder = Path(args.run).expanduser()
    folder = folder / "images" if (folder / "images").is_dir() else folder
    if not folder.is_dir():
        raise UserError(f"run={args.run}: not a folder; give a run folder (it holds images/) or a folder of grids.")
    if args.every < 1 or args.hold < 0:
        raise UserError(f"every={args.every} hold={args.hold}: every is 1 or more, hold 0 seconds or more.")
    paths = grids(folder)
    if not paths:
        raise UserError(f"run={args.run}: {folder} holds no sample grids (<iteration>.png, written every sample_every "
                        f"iterations); a run with sample_every=0 writes only its last.")
    paths = paths[::args.every] + ([paths[-1]] if (len(paths) - 1) % args.every else [])
    out = Path(args.out).expanduser() if args.out else folder.parent / "timelapse.gif"
    check(out, args.fps)
    if os.path.lexists(out) and not (args.overwrite and out.is_file()):
        raise UserError(f"out={out} exists: give a new file name, or overwrite=true to replace it.")
    sizes = []
    for path in paths:  # the sizes from the files' headers, without decoding them
        with Image.open(path) as image:
            sizes.append(image.size)
    size = (max(w for w, _ in sizes), max(h for _, h in sizes))
    repeat = round(args.hold * args.fps)
    count = len(paths) + repeat
    how = write_animation(out, frames(paths, size, repeat), count, args.fps)
    first, last = (GRID.match(p.name).group(1).lstrip("0") or "0" for p in (paths[0], paths[-1]))
    print(f"{out}: {len(paths)} grids, iterations {first} to {last}, {count / args.fps:.1f} s at {args.fps} fps, {how}",
          file=sys.stderr)
    return out


def main() -> None:
    print(run_command(timelapse, Args, __doc__))


if __name__ == "__main__":
    main()
