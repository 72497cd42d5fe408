"""`python train.py --help`: what a new user needs, read off conf/ (the groups, their options and
the run options, each with the one-line comment its YAML carries), printed without importing
torch or composing a config, so it answers at once even on a busy machine."""

from __future__ import annotations

import re
from pathlib import Path

from gan.config import CONF

MAIN = CONF / "train.yaml"

EXAMPLES = """\
examples:
  python train.py                                   the classic Keras MNIST GAN (30,000 iterations)
  python train.py model.latent_dim=64 optimizer.lr=1e-4 trainer=gpu
  python train.py experiment=dcgan_mnist            a complete recipe
  python train.py debug=fast                        a seconds-long smoke run (in outputs/debug/)
  python train.py -m model.latent_dim=32,64         a sweep: one job per value
  python train.py ckpt_path=outputs/<date>/<time>   resume a run from its folder"""


def comment(line: str) -> str:
    return line.split("#", 1)[1].strip() if "#" in line else ""


def description(option: Path) -> str:
    """An option file's first comment line (after `# @package`), which says what it is."""
    for line in option.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def groups(main: str) -> list[str]:
    """One block per group of the defaults list: its meaning, then each option, * on the default."""
    blocks = []
    for name, default, meaning in re.findall(r"^  - (\w+): (\w+)\s*#\s*(.+)$", main, re.MULTILINE):
        options = sorted(p for p in (CONF / name).glob("*.yaml"))
        width = max(len(p.stem) for p in options) + 2
        rows = [f"    {p.stem + (' *' if p.stem == default else ''):<{width}}  {description(p)}" for p in options]
        blocks.append("\n".join([f"  {name}: {meaning}", *rows]))
    return blocks


def run_options(main: str) -> list[str]:
    """The top-level keys of train.yaml, the update rule's `gan.*` and the `schedule.*`, with value and comment."""
    keys, section = [], ""
    for line in main.splitlines():
        top = re.match(r"^(\w+):\s*(.*)$", line)
        if top:
            section = top.group(1)
            value = top.group(2).split("#", 1)[0].strip()
            if value and section not in ("run_dir",):
                keys.append((section, value, comment(line)))
            continue
        nested = re.match(r"^  (\w+):\s*([^#]*?)\s*#\s*(.+)$", line)
        if nested and section in ("gan", "schedule"):
            keys.append((f"{section}.{nested.group(1)}", nested.group(2), nested.group(3)))
    width = max(len(f"{k}={v}") for k, v, _ in keys) + 2
    return [f"  {f'{k}={v}':<{width}}  {c}" for k, v, c in keys]


def text() -> str:
    main = MAIN.read_text()
    return "\n".join([
        "usage: python train.py [group=option ...] [key=value ...]   one run, in outputs/<date>/<time>/",
        "       python train.py -m [key=a,b ...]                     a sweep, one job per combination",
        "",
        "Train a GAN from the configs in conf/ (Hydra). Pick an option of a group with group=option",
        "(* marks the default), set any key with key=value.",
        "",
        "groups:",
        *groups(main),
        "",
        "run options (key=value, default shown):",
        *run_options(main),
        "",
        "Every other key: each conf/<group>/<option>.yaml comments its keys; `python train.py --cfg job",
        "[overrides]` prints the composed config; the README's \"Config groups\" table. Sweeps run on",
        "hydra/launcher=joblib, submitit_local or slurm; Hydra's own flags: --hydra-help.",
        "",
        EXAMPLES,
    ])
