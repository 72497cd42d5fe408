"""Score a checkpoint (or a run folder's last one) against the dataset's test split (a folder's held-out images).

Prints a table of the metrics and of the real-data floor (the training split against the test
split), then one line of JSON with the keys fid, kid, is, precision, recall, modes_covered,
kl_uniform, n and floor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from hydra.utils import instantiate

from gan.checkpoints import load_generator
from gan.cli import run
from gan.errors import UserError
from gan.metrics import METRICS
from gan.metrics.evaluator import Evaluator


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


def evaluate(args: Args) -> dict:
    check(args)
    generator, cfg, ckpt = load_generator(args.ckpt, args.best, args.ema)
    datamodule = instantiate(cfg.data)
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
