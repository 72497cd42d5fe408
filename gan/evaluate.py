"""Score a checkpoint (or a run folder's last one) against the dataset's test split (a folder's held-out images).

Prints a table of the metrics and of the real-data floor (the training split against the test
split), then one line of JSON with the keys fid, kid, is, precision, recall, modes_covered,
kl_uniform, n and floor.

The data are read from `data_root` when given; else from the folder the run read them from, when
it exists here; else from this machine's data root (conf/data's own, e.g. $GAN_DATA_DIR), where a
missing dataset is downloaded. A checkpoint never names a place to write: nothing is downloaded
into a folder that only the file gave.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from gan.config.cli import run
from gan.config.signatures import parameters
from gan.config.untrusted import FileConfig, config_dirs, offered, rebuild
from gan.errors import UserError
from gan.metrics import METRICS
from gan.metrics.evaluator import Evaluator
from gan.run.checkpoints.files import load_generator


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, or a run folder (its checkpoints/last.ckpt)
    n: int = 10_000  # generated samples, scored against the test split (MNIST: 10,000 images)
    k: int = 3  # neighbours for precision and recall
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    seed: int = 0  # the evaluation noise
    features: str = "classifier"  # classifier (offline) | inception (needs inception_weights)
    inception_weights: Optional[str] = None  # torch-fidelity's Inception-v3 weights file
    ema: bool = True  # a run with gan.ema_decay: score the weight average (false: the trained generator)
    data_root: Optional[str] = None  # where the data lie (null: the run's own folder if it exists here, else this machine's)
    config_dir: Optional[str] = None  # your own config folder, whose options' classes may be rebuilt too (as --config-dir)


def table(rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    lines = [f"{'metric':<14}" + "".join(f"{name:>14}" for name in names)]
    for metric in (m for m in METRICS if m in rows[names[0]]):
        lines.append(f"{metric:<14}" + "".join(f"{rows[name][metric]:>14.4g}" for name in names))
    return "\n".join(lines)


def check(args: Args) -> None:
    """What the scores need, said before the checkpoint is loaded."""
    if args.k < 1:
        raise UserError(f"k={args.k}: precision and recall need at least 1 neighbour (k=3 is the usual choice).")
    if args.n <= max(args.k, 1):
        raise UserError(f"n={args.n}: the scores need more samples than k={args.k} neighbours, and at least 2 "
                        f"(10000 is the usual choice; fewer gives noisier numbers).")
    if args.seed < 0:
        raise UserError(f"seed={args.seed}: the evaluation noise seed must be 0 or more.")
    if args.features not in ("classifier", "inception"):
        raise UserError(f"features={args.features}: choose classifier (offline) or inception (with inception_weights=).")


def local_root(target: str, dirs: tuple[Path, ...]) -> str | None:
    """This machine's data root for a data module: the `root` of the conf/data option that builds
    it, resolved here (its own `${oc.env:GAN_DATA_DIR,data}`: a file of ours, not the checkpoint's)."""
    node = offered(dirs).written.get(("data", target))
    return None if node is None else OmegaConf.create({"root": node.get("root")}).root


def datamodule_of(config: FileConfig, data_root: str | None, dirs: tuple[Path, ...]):
    """The run's data module, rebuilt from its checkpoint; where its files are read from, and
    whether they may be downloaded, is this machine's choice (the module docstring)."""
    target = config.node("data._target_")
    saved = None if "data.root" in config.unknown else config.values["data"].get("root")
    if data_root is not None:
        root, own = data_root, True
    elif saved is not None and Path(saved).expanduser().is_dir():
        root, own = saved, False
    else:
        root, own = local_root(target, dirs) if isinstance(target, str) else None, True
    if root is None:
        raise UserError(f"{config.source} was trained on data.root={saved}, which is not a folder here: give "
                        f"data_root=<the folder of its images>.")
    given = {"root": root}
    if "download" in parameters(target):
        given["download"] = own and bool(config.values["data"].get("download", True))
    return rebuild(config, "data", **given)


def evaluate(args: Args) -> dict:
    check(args)
    dirs = config_dirs(args.config_dir)
    generator, config, ckpt = load_generator(args.ckpt, args.best, args.ema, dirs)
    datamodule = datamodule_of(config, args.data_root, dirs)
    datamodule.prepare_data()  # a missing dataset is named here
    evaluator = Evaluator(datamodule, n=args.n, k=args.k, seed=args.seed,
                          features=args.features, inception_weights=args.inception_weights)
    result = evaluator(generator)
    result["floor"] = evaluator.floor()
    accuracy = "" if evaluator.accuracy is None else f" (feature classifier: {100 * evaluator.accuracy:.2f}% test accuracy)"
    print(f"{ckpt}: {args.n} samples against the test split{accuracy}")
    if evaluator.missing:
        print(f"Note: {evaluator.missing}.")
    print(table({"generated": result, "real floor": result["floor"]}))
    return result


def main() -> None:
    print(json.dumps(run(evaluate, Args, __doc__)))


if __name__ == "__main__":
    main()
