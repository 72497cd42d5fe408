"""Score a checkpoint (or a run folder's last one) under an evaluation protocol, or write a data set's reference statistics.

`python -m gan.evaluate ckpt=<run> protocol=fid50k_train` scores the generator (the protocols:
README, Metrics; the default classifier10k_test works offline) and prints a table of the metrics
beside the real-data floor (real images of the other split against the same reference), the
memorisation check (each sample's nearest training image against the held-out images' own, with
a PNG of the closest pairs), then one line of JSON: fid, kid, is, precision, recall, density,
coverage, intra_fid (conditional runs; fid_per_class beside it), modes_covered, kl_uniform, n,
protocol, features, floor, memorisation. `ref=<file.npz>` scores FID against reference statistics
from elsewhere (pytorch-fid's or clean-fid's format). A run logged to MLflow gets the scores (as
evaluate/<protocol>/<name>, at the checkpoint's iteration) and the closest pairs' PNG in its MLflow run.

`python -m gan.evaluate stats data=<conf/data option> [data.<key>=...] protocol=... out=<file.npz>`
writes the reference statistics (mu, sigma, and what produced them) of the protocol's reference
split, in the format pytorch-fid and clean-fid read.

The data are read from `data_root` when given; else from the folder the run read them from, when
it exists here; else from this machine's data root (conf/data's own, e.g. $GAN_DATA_DIR), where a
missing dataset is downloaded. A checkpoint never names a place to write: nothing is downloaded
into a folder that only the file gave.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
from torchvision.utils import make_grid

from gan.callbacks import readable
from gan.config.building import build, compose_train
from gan.config.cli import run
from gan.config.untrusted import config_dirs
from gan.data import to_unit
from gan.errors import UserError
from gan.files import save_image
from gan.metrics import METRICS
from gan.metrics.evaluator import Evaluator, describe
from gan.metrics.protocols import DEFAULT, Protocol, parse
from gan.metrics.stats_files import write_stats
from gan.run.checkpoints.files import datamodule_of, load_generator, saved_step
from gan.run.trackers import add_evaluation
from gan.samples import check_truncation, truncated
from gan.training import resolvers  # noqa: F401 (the config's own resolvers, for `stats`)


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, or a run folder (its checkpoints/last.ckpt)
    protocol: str = DEFAULT  # <family><count>_<reference>: classifier10k_test | fid10k_test | fid50k_train | clean_fid50k_train
    n: Optional[int] = None  # generated samples (null: the protocol's count; another renames it, e.g. fid2k_test)
    k: int = 3  # neighbours for precision, recall, density and coverage
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    seed: int = 0  # the evaluation noise
    inception_weights: Optional[str] = None  # fid/clean_fid protocols: pytorch-fid's weights file | download | null: the caches
    ref: Optional[str] = None  # a .npz of reference statistics (mu, sigma) to score FID against instead of the data's
    truncation: float = 1.0  # psi in (0, 1]: score samples of noise pulled toward its mean (1: as trained)
    memorisation: int = 1000  # samples checked for copies of training images (0: off)
    grid: Optional[str] = None  # the PNG of the closest sample/training pairs (null: <run folder>/evaluations/)
    ema: bool = True  # a run with gan.ema_decay: score the weight average (false: the trained generator)
    data_root: Optional[str] = None  # where the data lie (null: the run's own folder if it exists here, else this machine's)
    config_dir: Optional[str] = None  # your own config folder, whose options' classes may be rebuilt too (as --config-dir)
    track: bool = True  # add the scores and the pictures to the run's MLflow run, when it had one (its trackers.json)


@dataclass
class StatsArgs:
    SUBCOMMAND: ClassVar[str] = "stats"
    out: str = "???"  # the .npz to write
    data: str = "mnist"  # the conf/data option (data.<key>=... overrides its keys, as for train.py)
    protocol: str = "fid50k_train"  # its family and reference split say which network, resize and images
    inception_weights: Optional[str] = None  # fid/clean_fid protocols: pytorch-fid's weights file | download | null: the caches


def table(rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    lines = [f"{'metric':<14}" + "".join(f"{name:>14}" for name in names)]
    for metric in (m for m in METRICS if m in rows[names[0]]):
        lines.append(f"{metric:<14}" + "".join(f"{rows[name].get(metric, float('nan')):>14.4g}" for name in names))
    return "\n".join(lines)


def check(args: Args) -> Protocol:
    """What the scores need, said before the checkpoint is loaded."""
    check_truncation(args.truncation)
    if args.k < 1:
        raise UserError(f"k={args.k}: precision and recall need at least 1 neighbour (k=3 is the usual choice).")
    if args.n is not None and args.n <= max(args.k, 1):
        raise UserError(f"n={args.n}: the scores need more samples than k={args.k} neighbours, and at least 2 "
                        f"(10000 is the usual choice; fewer gives noisier numbers).")
    if args.seed < 0:
        raise UserError(f"seed={args.seed}: the evaluation noise seed must be 0 or more.")
    if args.memorisation < 0:
        raise UserError(f"memorisation={args.memorisation}: the number of samples checked for copies, 0 (off) or more.")
    protocol = parse(args.protocol, args.n)
    if args.n is None and protocol.n <= max(args.k, 1):
        raise UserError(f"protocol={args.protocol}: the scores need more samples than k={args.k} neighbours.")
    return protocol


def evaluate(args: Args) -> dict:
    protocol = check(args)
    dirs = config_dirs(args.config_dir)
    generator, config, ckpt = load_generator(args.ckpt, args.best, args.ema, dirs)
    generator = truncated(generator, args.truncation)
    scored = protocol.name + ("" if args.truncation == 1 else f"_psi{args.truncation:g}")  # names what was scored
    datamodule = datamodule_of(config, args.data_root, dirs)
    datamodule.prepare_data()  # a missing dataset is named here
    evaluator = Evaluator(datamodule, protocol, k=args.k, seed=args.seed, inception_weights=args.inception_weights,
                          ref=args.ref, conditional=generator.num_classes is not None)
    result = evaluator(generator)
    if args.truncation != 1:
        result["truncation"] = args.truncation
    result["floor"] = evaluator.floor()
    accuracy = "" if evaluator.accuracy is None else f" (feature classifier: {100 * evaluator.accuracy:.2f}% test accuracy)"
    print(f"{ckpt}: {describe(evaluator)}{accuracy}")
    if evaluator.missing:
        print(f"Note: {evaluator.missing}.")
    print(table({"generated": result, "real floor": result["floor"]}))
    if args.memorisation:
        result["memorisation"] = check_copies(evaluator, generator, min(args.memorisation, protocol.n),
                                              Path(args.grid) if args.grid else default_grid(ckpt, scored))
    if args.track:
        pictures = [Path(result["memorisation"]["grid"])] if args.memorisation else []
        if said := add_evaluation(ckpt, saved_step(Path(ckpt)), scored, result, pictures):
            print(said)
    return result


def default_grid(ckpt: str | Path, protocol: str) -> Path:
    """<run folder>/evaluations/nearest_<checkpoint>_<protocol>.png (the checkpoint's folder for a loose file)."""
    ckpt = Path(ckpt)
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder / "evaluations" / f"nearest_{ckpt.stem}_{protocol}.png"


def check_copies(evaluator: Evaluator, generator, n: int, grid: Path, pairs: int = 16) -> dict:
    """The memorisation check, printed, with the grid of its closest pairs (sample left, its nearest training image right)."""
    found = evaluator.memorisation(generator, n)
    closest = found["order"][:pairs]
    train_images = evaluator.datamodule.split(train=True)[0][found["nearest"][closest]]
    samples = found["samples"][closest].clamp(-1, 1)
    gap = torch.zeros(*samples.shape[:3], 2)  # grey, between a sample and its training image
    pairs = torch.cat([samples, gap, to_unit(train_images)], dim=-1)
    caption = f"the {len(closest)} samples of {n} nearest to a training image (right)"
    save_image(readable(make_grid(pairs, nrow=4, padding=6, normalize=True, value_range=(-1, 1), pad_value=1), caption), grid)
    summary = {k: found[k] for k in ("n", "median", "heldout_median", "ratio", "below_heldout_p1")}
    print(f"memorisation: median distance to the nearest training image {summary['median']:.4g} for samples, "
          f"{summary['heldout_median']:.4g} for held-out images (ratio {summary['ratio']:.3g}; "
          f"{100 * summary['below_heldout_p1']:.1f}% of samples nearer than 99% of held-out images; about 1% when "
          f"nothing is copied); closest pairs: {grid}")
    return {**summary, "grid": str(grid)}


def write_reference(args: StatsArgs, data_overrides: list[str]) -> dict:
    """The reference statistics of a data set's protocol split, as a .npz."""
    protocol = parse(args.protocol)
    if not args.out.endswith(".npz"):
        raise UserError(f"out={args.out}: reference statistics are written as .npz (the format pytorch-fid and clean-fid read).")
    cfg = compose_train(f"data={args.data}", *data_overrides, "run_dir=/nonexistent")
    datamodule = build(cfg, "data", batches_per_step=1, iterations_per_step=1)
    datamodule.prepare_data()
    evaluator = Evaluator(datamodule, protocol, inception_weights=args.inception_weights)
    provenance = evaluator.provenance()
    write_stats(args.out, *evaluator.reference_statistics(), provenance)
    print(f"{args.out}: mu and sigma of {provenance['images']} {protocol.reference} images of {datamodule.name} "
          f"({evaluator.network}, {protocol.resize} resize)")
    return {"out": args.out, **provenance}


def main() -> None:
    if sys.argv[1:2] == ["stats"]:
        argv = sys.argv[2:]
        data_overrides = [a for a in argv if a.startswith("data.")]
        sys.argv[1:] = [a for a in argv if not a.startswith("data.")]
        print(json.dumps(run(lambda args: write_reference(args, data_overrides), StatsArgs, __doc__)))
        return
    print(json.dumps(run(evaluate, Args, __doc__)))


if __name__ == "__main__":
    main()
