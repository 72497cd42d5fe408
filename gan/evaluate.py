"""Score a checkpoint: `python -m gan.evaluate ckpt=<checkpoint or run folder> [n=10000] [k=3] [seed=0]`.

Prints a table of the metrics and of the real-data floor (the training split against the test
split), then one line of JSON with the keys fid, kid, is, precision, recall, modes_covered,
kl_uniform, n and floor.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan.errors import UserError
from gan.metrics.evaluator import METRICS, Evaluator
from gan.runs import load_generator


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, or a run folder (its checkpoints/last.ckpt)
    n: int = 10_000  # generated samples, scored against the 10,000 test images
    k: int = 3  # neighbours for precision and recall
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    seed: int = 0  # the evaluation noise


def parse(argv: list[str], schema: type, usage: str) -> object:
    """key=value arguments checked against a dataclass: one clear message for a bad one."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv)))
    except OmegaConfBaseException as exc:
        raise UserError(f"{' '.join(str(exc).split())}. Usage: {usage.splitlines()[0]}") from None


def table(rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    lines = [f"{'metric':<14}" + "".join(f"{name:>14}" for name in names)]
    for metric in METRICS:
        lines.append(f"{metric:<14}" + "".join(f"{rows[name][metric]:>14.4g}" for name in names))
    return "\n".join(lines)


def evaluate(args: Args) -> dict:
    generator, cfg, ckpt = load_generator(args.ckpt, args.best)
    evaluator = Evaluator(instantiate(cfg.data), n=args.n, k=args.k, seed=args.seed)
    result = evaluator(generator, cfg.model.latent_dim)
    result["floor"] = evaluator.floor()
    print(f"{ckpt}: {args.n} samples against the test split (feature classifier: {100 * evaluator.accuracy:.2f}% test accuracy)")
    print(table({"generated": result, "real floor": result["floor"]}))
    return result


def main() -> None:
    try:
        result = evaluate(parse(sys.argv[1:], Args, __doc__))
    except UserError as exc:
        sys.exit(f"error: {exc}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
