"""Speed: the runner's iterations/s against a hand-written loop doing the same maths.

    python -m gan.bench [device=cpu|cuda] [models=seed,dcgan,sngan_resnet,r3gan] [block=N] [rounds=R] [overrides=[KEY=VALUE,...]]
    python -m gan.bench mode=train [overrides=[...]]   # the whole `python train.py ...`, start-up included
    python -m gan.bench mode=writes [rounds=R]         # a checkpoint written whole vs by Lightning; cache checks
    python -m gan.bench mode=augment [models=...] [rounds=R]  # what augmenting D's images costs per iteration
    python -m gan.bench mode=data_efficiency [models=...] [sweeps=[...]]  # FID on MNIST subsets, by augmentation
    python -m gan.bench mode=equal_time [models=dcgan,sngan_resnet,r3gan] [minutes=20] [seeds=1,2]  # FID at equal wall clock
    python -m gan.bench mode=metrics [device=...] [images=N]  # feature networks' images/s, and what each protocol costs
    python -m gan.bench mode=precision [models=...] [precisions=32-true,bf16-mixed] [rounds=R]  # it/s by trainer.precision
    python -m gan.bench mode=precision_fid [models=...] [precisions=...] [seeds=1,2,3] [iterations=N]  # FID by precision
    python -m gan.bench mode=walk [walk_frames=100,1000]  # gan.generate mode=walk's peak memory as walks grow, by format
    python -m gan.bench mode=workers [iterations=N] [slots=3]  # a study with one 5x trial: batches against sweeper processes

For each model (the seed MLP, the DCGAN recipe, SNGAN's ResNet, R3GAN) one runner fit cycles through blocks of
iterations, in one process, so that a machine whose speed drifts (a shared VM) affects all
three alike:
  - default: the runner as `python train.py` runs it (iterations_per_step=auto, CUDA graphs on a GPU);
  - hand:    a plain PyTorch loop of the same update (fused Adam, data as one tensor on the device),
             on copies of the networks, run between two runner iterations;
  - eager:   the runner as it was before iterations were chunked: one GAN iteration per Lightning
             step, every optimizer step through Lightning, no CUDA graph.
The runner is the full train.py path (datamodule, module, callbacks, TensorBoard logging every
50 iterations) minus checkpoints and sample images. It prints the rates, the ratios to the
hand loop, the FLOPs of one iteration (counted by torch) and the machine's GEMM rate, so a rate
reads as a fraction of the hardware.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from gan.augment import ADA, DiffAugment, NoAugment
from gan.config import CONF
from gan.config.building import compose_train
from gan.config.cli import run
from gan.config.untrusted import read_yaml
from gan.data import to_unit
from gan.engine.lightning_adapter import skip_graph_capture_check
from gan.errors import UserError
from gan.module import GAN
from gan.processes import die_with_parent
from gan.run.status import read_status
from gan.training import resolvers
from gan.training.fit import fit
from gan.training.sizing import numel

PADDED_MNIST = ["data=mnist", "data.pad=2", "data.image_shape=[1,32,32]"]  # CIFAR-10 is not on every machine
# The residual recipes' networks at their default size, on MNIST padded to 32 px, r3gan_cifar10 with a smaller batch
# (its 512 takes minutes per iteration on a CPU; overrides=[data.batch_size=512] for the recipe's own).
MODELS = {"seed": [], "dcgan": ["experiment=dcgan_mnist"],
          "sngan_resnet": ["experiment=sngan_resnet_cifar10", *PADDED_MNIST],
          "r3gan": ["experiment=r3gan_cifar10", *PADDED_MNIST, "data.batch_size=32"]}
HAND_LOSSES = ("NonSaturating", "Hinge", "RelativisticPairing")
HAND_STEP = None  # the hand loop's step, for the Interleaved callback that Hydra builds


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def hand_loop(module: GAN, images: torch.Tensor, batch: int, precision: str = "32-true"):
    """The update written out in plain PyTorch on copies of the module's networks and optimizers:
    `n_critic` D steps, each on a fresh real batch and G's fakes (two steps, or one on the summed
    loss; one for a pairwise loss), R1 on the reals and R2 on the fakes where the loss sets them,
    then G through a frozen D (beside a real batch of its own for a pairwise loss), then the
    average of G's weights; D sees every image through the module's augmentation (its own
    draws). The loss written out: non-saturating BCE, hinge or RpGAN; a conditional G gets
    random labels. Under a `*-mixed` precision each iteration runs in autocast (cast cache off,
    as Lightning's), D's logits taken to float32 as the runner takes them. What the runner is
    measured against."""
    g, d = copy.deepcopy(module.generator), copy.deepcopy(module.discriminator)
    g_opt, d_opt = module.g_optimizer(g.parameters()), module.d_optimizer(d.parameters())
    if images.device.type == "cpu":  # as in a script without Lightning, whose import makes each step ask NVML
        skip_graph_capture_check(g_opt)
        skip_graph_capture_check(d_opt)
    device, fakes_train, loss = images.device, module.fakes_mode == "train", module.loss
    kind, pairs, two_steps = type(loss).__name__, loss.pairs, module.d_update == "two_steps" and not loss.pairs
    if kind not in HAND_LOSSES or loss.penalty_every > 1 or loss.gp_weight or module.auxiliary:
        raise UserError(f"the hand loop writes out {', '.join(HAND_LOSSES)} with R1/R2 on every D step; not {kind} "
                        f"(penalty_every={loss.penalty_every}, gp_weight={loss.gp_weight}, auxiliary={module.auxiliary})")
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
    ema = None if module.generator_ema is None else list(copy.deepcopy(module.generator_ema.module).parameters())
    half_life = 1000 * (module.ema_kimg or 10)  # the weight's value does not change the cost
    ema_weight = 1 - 0.5 ** (batch / max(half_life, 1e-8))
    augment, rng, size = copy.deepcopy(module.augment), torch.Generator(device).manual_seed(0), tuple(images.shape[-2:])
    half = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    autocast = functools.partial(torch.autocast, device.type, dtype=half, enabled=half is not None, cache_enabled=False)

    def seen(x: torch.Tensor) -> torch.Tensor:
        return augment(x, augment.draw(len(x), size, rng, device))

    def judge(x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return d(seen(x), labels).float()

    def d_terms(real_logits: torch.Tensor | None, fake_logits: torch.Tensor | None) -> torch.Tensor:
        if kind == "RelativisticPairing":
            return F.softplus(fake_logits - real_logits).mean()
        if kind == "Hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        pairs_ = ((real_logits, ones), (fake_logits, zeros))
        return sum(F.binary_cross_entropy_with_logits(x, t) for x, t in pairs_ if x is not None)

    def g_term(fake_logits: torch.Tensor, real_logits: torch.Tensor | None) -> torch.Tensor:
        if kind == "RelativisticPairing":
            return F.softplus(real_logits - fake_logits).mean()
        return -fake_logits.mean() if kind == "Hinge" else F.binary_cross_entropy_with_logits(fake_logits, ones)

    def penalty(gamma: float, logits: torch.Tensor, x: torch.Tensor):
        if not gamma:
            return 0.0
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return gamma / 2 * grad.square().sum([1, 2, 3]).mean()

    def d_step(value: torch.Tensor) -> None:
        d_opt.zero_grad(set_to_none=True)
        value.backward()
        d_opt.step()

    def draw() -> tuple[torch.Tensor, torch.Tensor | None]:
        labels = None if g.num_classes is None else torch.randint(g.num_classes, (batch,), device=device)
        return images[torch.randint(len(images), (batch,), device=device)], labels

    def step() -> None:
        with autocast():
            iteration()

    def iteration() -> None:
        for _ in range(module.n_critic):
            real, labels = draw()
            with torch.no_grad():
                g.train(fakes_train)
                fake = g(g.draw_noise(batch, device=device), labels)
                g.train()
            real.requires_grad_(bool(loss.r1_gamma))
            fake.requires_grad_(bool(loss.r2_gamma))
            real_logits = judge(real, labels)
            if two_steps:
                d_step(d_terms(real_logits, None) + penalty(loss.r1_gamma, real_logits, real))
                fake_logits = judge(fake, labels)
                d_step(d_terms(None, fake_logits) + penalty(loss.r2_gamma, fake_logits, fake))
            else:
                fake_logits = judge(fake, labels)
                d_step(d_terms(real_logits, fake_logits) + penalty(loss.r1_gamma, real_logits, real)
                       + penalty(loss.r2_gamma, fake_logits, fake))
        real, labels = draw()
        d.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        fake_logits = judge(g(g.draw_noise(batch, device=device), labels), labels)
        g_term(fake_logits, judge(real, labels) if pairs else None).backward()
        g_opt.step()
        d.requires_grad_(True)
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, list(g.parameters()), ema_weight)

    return step


class Interleaved(pl.Callback):
    """Inside one runner fit, blocks of `block` iterations take turns: after a warm-up block, the
    runner's default path, the hand loop (run here, between two iterations), the runner's eager
    path, and again. The eager path gives every optimizer step to Lightning, sets the CUDA graph
    aside and plans one iteration per step (the datamodule's `cap_at`, which plans ahead)."""

    result: dict[str, float] = {}

    def __init__(self, block: int):
        self.every_n_steps, self.hand_step = block, HAND_STEP  # chunks end on block boundaries
        self.done = {"default": [0, 0.0], "eager": [0, 0.0], "hand": [0, 0.0]}
        self.start: float | None = None
        Interleaved.result = {}

    def mode(self, step: int) -> str:
        """The path that runs the block starting after iteration `step`."""
        b = step // self.every_n_steps
        return "eager" if b and b % 2 == 0 else "default"

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        datamodule, default_cap = trainer.datamodule, trainer.datamodule.chunk_cap
        datamodule.cap_at = lambda step: 1 if self.mode(step) == "eager" else default_cap

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, *args) -> None:
        step, device, block = trainer.global_step, pl_module.device, self.every_n_steps
        if not hasattr(self, "fast"):  # the default path's settings, as the module's on_train_start made them
            self.fast = (pl_module.execution.through_lightning, pl_module.execution.graphed)
        if step % block:
            return
        if self.start is not None:  # a timed runner block ends
            ended = self.mode(step - 1)
            self.done[ended][0] += block
            self.done[ended][1] += sync(device) - self.start
            if ended == "default":
                then = sync(device)
                for _ in range(block):
                    self.hand_step()
                self.done["hand"][0] += block
                self.done["hand"][1] += sync(device) - then
        eager = self.mode(step) == "eager"
        pl_module.execution.through_lightning, pl_module.execution.graphed = ("bench: eager", None) if eager else self.fast
        self.start = sync(device)
        Interleaved.result = {k: n / s for k, (n, s) in self.done.items() if s}
        Interleaved.result["replays"] = getattr(self.fast[1], "replayed", 0)


class AugmentBlocks(pl.Callback):
    """mode=augment: one fit whose blocks of iterations cycle through D seeing the images as they
    are, through DiffAugment (all three transforms) and through ADA (the bgc pipeline at a fixed
    p = 0.5; its cost does not depend on p), after one warm-up block. Each block's rate is kept."""

    KINDS = ("none", "diffaug", "ada")
    result: dict[str, list[float]] = {}

    def __init__(self, block: int):
        self.every_n_steps, self.start = block, None
        self.augments = {"none": NoAugment(), "diffaug": DiffAugment(), "ada": ADA(p=0.5, target=None)}
        AugmentBlocks.result = {k: [] for k in self.KINDS}

    def kind(self, step: int) -> str:
        b = step // self.every_n_steps
        return self.KINDS[(b - 1) % 3] if b else "none"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, *args) -> None:
        step, device, block = trainer.global_step, pl_module.device, self.every_n_steps
        if step % block:
            return
        if step > block:  # a timed block ends (the first one warmed up)
            AugmentBlocks.result[self.kind(step - 1)].append(block / (sync(device) - self.start))
        pl_module.augment = self.augments[self.kind(step)].to(device)
        pl_module.execution.draws.use(pl_module.augment)
        self.start = sync(device)


def augment_cost(args: Args, device: torch.device) -> None:
    """Each model's rate with D's images as they are, through DiffAugment and through ADA, and
    the augmentation's share of an augmented iteration's time (paired by round: mean ± std)."""
    print(f"device: {device_name(device)}")
    bench_module = importlib.import_module("gan.bench")
    for model in args.models.split(","):
        block = block_length(args, model, device)
        with tempfile.TemporaryDirectory() as run_dir:
            fit(config(model, device.type, f"trainer.max_steps={block * (1 + 3 * args.rounds)}", *BENCH_FIT,
                       "gan.cuda_graph=false", "+callbacks.bench._target_=gan.bench.AugmentBlocks",
                       f"+callbacks.bench.block={block}", *args.overrides, run_dir=run_dir))
        rates = bench_module.AugmentBlocks.result
        print(f"\n{model}: {args.rounds} rounds of {block}-iteration blocks (none, diffaug, ada), one fit")
        for kind in AugmentBlocks.KINDS:
            line = f"  {kind:8s} {statistics.mean(rates[kind]):8.1f} ± {statistics.stdev(rates[kind]):5.1f} it/s"
            if kind != "none":
                shares = [1 - r / n for r, n in zip(rates[kind], rates["none"])]
                line += f"   augmentation's share of the iteration: {100 * statistics.mean(shares):5.1f} ± " \
                        f"{100 * statistics.stdev(shares):4.1f} %"
            print(line)


# mode=data_efficiency: each model's recipe and its iterations (equal for every augmentation and subset).
EFFICIENCY = {"seed": (["experiment=keras_seed"], 15000),
              "dcgan": (["experiment=dcgan_mnist", "model.generator.width=16", "model.discriminator.width=16"], 2000)}
SUBSETS, AUGMENTS, SEEDS = ("1000", "5000", "null"), ("none", "diffaug", "ada"), "1,2,3"


def data_efficiency(args: Args) -> None:
    """Each model trained on MNIST subsets of 1,000 and 5,000 images and on all 60,000, with each
    augmentation, over 3 seeds (a sweep of `python train.py -m`, 2 jobs at a time, into
    `outputs/bench/data-efficiency-<model>/`; `sweeps=[...]` reads finished sweep folders instead),
    then the final FID against the 10,000 test images as mean ± std over the seeds."""
    folders = [Path(f) for f in args.sweeps]
    if not folders:
        for model in args.models.split(","):
            recipe, steps = EFFICIENCY[model]
            folder = CONF.parent / "outputs" / "bench" / f"data-efficiency-{model}"
            done = subprocess.run([sys.executable, str(CONF.parent / "train.py"), "-m", *recipe,
                                   f"data.subset={','.join(SUBSETS)}", f"augment={','.join(AUGMENTS)}", f"seed={SEEDS}",
                                   f"trainer.max_steps={steps}", f"eval_every={steps}", f"sample_every={steps // 4}",
                                   f"callbacks.checkpoint.every_n_train_steps={steps}", "hydra/launcher=joblib",
                                   "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={folder}", *args.overrides],
                                  capture_output=True, text=True, preexec_fn=functools.partial(die_with_parent, os.getpid()))
            if done.returncode:
                raise UserError(f"the {model} sweep failed ({done.returncode}): {done.stderr[-3000:]}")
            folders.append(folder)
    runs: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for status in sorted(p for folder in folders for p in folder.glob("*/status.json")):
        job, facts = status.parent, read_status(status.parent)
        chosen = dict(o.split("=", 1) for o in read_yaml(job / ".hydra" / "overrides.yaml") if "=" in o)
        if facts.get("status") != "completed" or "metrics/fid" not in facts.get("metrics", {}):
            continue
        recipe = (chosen.get("experiment", "the default recipe") + (" (width 16)" if "model.generator.width" in chosen else "")
                  + f", {chosen.get('trainer.max_steps', '?')} iterations")
        key = (recipe, chosen.get("data.subset", "null"), chosen.get("augment", "none"))
        runs.setdefault(key, []).append((facts["metrics"]["metrics/fid"], seconds_in_fit(facts)))
    for recipe in sorted({k[0] for k in runs}):
        cells = {k[1:]: v for k, v in runs.items() if k[0] == recipe}
        print(f"\n{recipe}: final FID (project classifier features), mean ± std over seeds (n)")
        print("| training images | " + " | ".join(AUGMENTS) + " | minutes per run |")
        print("|---|" + "---|" * (len(AUGMENTS) + 1))
        for subset in SUBSETS:
            row = []
            for augment in AUGMENTS:
                fids = [f for f, _ in cells.get((subset, augment), [])]
                row.append(f"{statistics.mean(fids):.1f} ± {statistics.stdev(fids):.1f} ({len(fids)})" if len(fids) > 1
                           else (f"{fids[0]:.1f} (1)" if fids else "—"))
            walls = [w for a in AUGMENTS for _, w in cells.get((subset, a), [])]
            minutes = f"{statistics.mean(walls) / 60:.1f}" if walls else "—"
            print(f"| {'60,000' if subset == 'null' else f'{int(subset):,}'} | " + " | ".join(row) + f" | {minutes} |")


# mode=equal_time: each model's recipe on MNIST at a size a CPU trains in minutes, and the pilot's two lengths.
EQUAL_TIME = {"dcgan": (["experiment=dcgan_mnist"], (20, 120)),
              "sngan_resnet": (["experiment=sngan_resnet_cifar10", *PADDED_MNIST, "model.width=8"], (5, 25)),
              "r3gan": (["experiment=r3gan_cifar10", *PADDED_MNIST, "model.conditional=false", "data.mirror=false",
                         "augment=none", "schedule.aug_p=null", "schedule.kimg=null", "schedule.ema_kimg=null",
                         "gan.ema_kimg=10", "gan.ema_rampup=0.05", "model.widths=[32,32,32,32]",
                         "model.cardinalities=[4,4,4,4]", "data.batch_size=64"], (5, 25))}


def train_pair(recipe: list[str], steps: int, minutes: float, seeds: list[int], folder: Path) -> list[Path]:
    """One `python train.py` per seed, all at once, each on one thread (the machine's cores
    shared as a user running seeds side by side would), capped at `minutes` of training (and 5%)
    by Lightning's max_time. Returns the run folders."""
    runs = [folder / f"seed{seed}" for seed in seeds]
    procs = [subprocess.Popen([sys.executable, str(CONF.parent / "train.py"), *recipe, f"seed={seed}",
                               f"trainer.max_steps={steps}", f"+trainer.max_time={clock(minutes * 63)}",
                               f"hydra.run.dir={run_dir}", "threads=1", "eval_every=0", "sample_every=0", "logger=none",
                               "callbacks.progress_bar.refresh_rate=0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=functools.partial(die_with_parent, os.getpid()))
             for seed, run_dir in zip(seeds, runs)]
    for proc, run_dir in zip(procs, runs):
        _, err = proc.communicate()
        if proc.returncode:
            raise UserError(f"{run_dir} failed ({proc.returncode}): {err[-3000:]}")
    return runs


def clock(seconds: float) -> str:
    """Lightning's max_time as DD:HH:MM:SS (a dict from the command line reaches it as a DictConfig)."""
    s = int(seconds)
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def seconds_in_fit(facts: dict) -> float:
    """A finished run's training time, from its status.json facts."""
    return facts["ended"] - facts["started"]


def equal_time(args: Args) -> None:
    """Each model trained for the same wall-clock budget (`minutes` of training per run), two seeds
    side by side on one thread each, then its final FID (the EMA generator where the recipe keeps
    one) against the 10,000 test images, as mean ± std over the seeds. The iterations a run is
    given come from a pilot: two short runs of each model, side by side like the real ones, whose
    difference is the seconds per iteration without start-up; the schedules (SNGAN's linear decay,
    R3GAN's cosine) then end where the budget does. max_time caps the training either way.
    Runs go to `outputs/bench/equal-time-<time>/<model>/seed<s>`; `sweeps=[that folder]` scores
    and prints finished runs instead."""
    from gan.evaluate import Args as Scoring  # noqa: PLC0415 (the scoring's imports only here)
    from gan.evaluate import evaluate

    models = args.models.split(",") if args.models != "seed,dcgan" else list(EQUAL_TIME)
    seeds = [s.strip() for s in str(args.seeds).split(",")]
    if (set(models) - set(EQUAL_TIME) or not all(s.isdigit() for s in seeds) or not args.minutes > 0
            or len(args.sweeps) > 1 or (args.sweeps and not Path(args.sweeps[0]).is_dir())):
        raise UserError(f"models={args.models} seeds={args.seeds} minutes={args.minutes} sweeps={args.sweeps}: mode=equal_time "
                        f"takes models among {', '.join(EQUAL_TIME)}, seeds as integers 0 or more separated by commas, "
                        f"minutes above 0, and at most one finished folder in sweeps.")
    seeds = [int(s) for s in seeds]
    top = Path(args.sweeps[0]) if args.sweeps else CONF.parent / "outputs" / "bench" / time.strftime("equal-time-%Y%m%d-%H%M%S")
    if not args.sweeps:
        for model in models:
            recipe, (short, long) = EQUAL_TIME[model]
            recipe = [*recipe, *args.overrides]
            pilot = {n: train_pair(recipe, n, args.minutes, seeds, top / "pilot" / f"{model}-{n}") for n in (short, long)}
            fit_s = {n: statistics.mean(seconds_in_fit(read_status(run)) for run in runs) for n, runs in pilot.items()}
            per_step = (fit_s[long] - fit_s[short]) / (long - short)
            overhead = max(fit_s[short] - short * per_step, 0.0)
            steps = max(int(0.97 * (args.minutes * 60 - overhead) / per_step), 1)  # a margin, so max_steps ends it
            print(f"{model}: {per_step:.3f} s per iteration (pilot, {len(seeds)} side by side), {overhead:.0f} s "
                  f"outside iterations: {steps} iterations in {args.minutes:g} min", flush=True)
            train_pair(recipe, steps, args.minutes, seeds, top / model)
    print(f"\nruns in {top}; each on 1 thread, {len(seeds)} side by side; FID on the project's MNIST classifier features, "
          f"10,000 samples against the 10,000 test images; mean ± std over seeds")
    print("| model | recipe | G / D parameters | iterations | real images drawn | minutes per run | FID |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        runs = sorted((top / model).glob("seed*/status.json"))
        if not runs:
            continue
        chosen = [o for o in read_yaml(runs[0].parent / ".hydra" / "overrides.yaml")
                  if o.split("=", 1)[0].lstrip("+~") not in RUN_KEYS]
        cfg = compose_train(*chosen, "run_dir=/nonexistent")
        module = GAN.from_config(cfg)
        sizes = " / ".join(f"{numel(net) / 1e6:.2f} M" for net in (module.generator, module.discriminator))
        facts = [read_status(r.parent) for r in runs]
        steps = [f["metrics"]["global_step"] for f in facts]
        planned = read_yaml(runs[0].parent / ".hydra" / "config.yaml")["trainer"]["max_steps"]
        minutes = [seconds_in_fit(f) / 60 for f in facts]
        fids = [evaluate(Scoring(ckpt=str(r.parent), memorisation=0))["fid"] for r in runs]
        images = statistics.mean(steps) * cfg.data.batch_size * GAN.real_batches(cfg)
        spread = f" ± {statistics.stdev(fids):.1f}" if len(fids) > 1 else ""
        print(f"| {model} | `{' '.join(chosen)}` | {sizes} | {statistics.mean(steps):.0f} of {planned} | {images / 1e3:.0f} k "
              f"| {statistics.mean(minutes):.1f} | {statistics.mean(fids):.1f}{spread} ({len(fids)}) |", flush=True)


RUN_KEYS = ("seed", "trainer.max_steps", "trainer.max_time", "hydra.run.dir", "threads", "eval_every", "sample_every", "logger",
            "callbacks.progress_bar.refresh_rate")  # what train_pair sets per run, not the recipe


# What a timed fit leaves out: checkpoints, sample grids, the progress bar.
BENCH_FIT = ("~callbacks.checkpoint", "~callbacks.last", "sample_every=1000000", "callbacks.progress_bar.refresh_rate=0")


def interleaved(block: int) -> tuple[str, ...]:
    return "+callbacks.bench._target_=gan.bench.Interleaved", f"+callbacks.bench.block={block}"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def block_length(args: Args, model: str, device: torch.device) -> int:
    """`block`, or its default: 500 iterations on CUDA; on a CPU 100 of the seed MLP, 10 of the DCGAN."""
    return args.block or (500 if device.type == "cuda" else (100 if model == "seed" else 10))


def config(model: str, device: str, *overrides: str, run_dir: str):
    accelerator = "gpu" if device == "cuda" else "cpu"
    return compose_train(*MODELS[model], f"run_dir={run_dir}", f"trainer.accelerator={accelerator}", "eval_every=0", *overrides)


def hand_setup(model: str, device: str, *overrides: str):
    """The hand loop's step function, and its FLOPs per iteration (counted once)."""
    cfg = config(model, device, *overrides, run_dir="/nonexistent")
    torch.manual_seed(0)
    module = GAN.from_config(cfg).to(device)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    step = hand_loop(module, to_unit(datamodule.images.to(device)), cfg.data.batch_size, str(cfg.trainer.precision))
    step()  # creates the optimizer state, so the count below is a steady-state iteration
    with TotalFlops() as counter:
        step()
    return step, counter.get_total_flops()


class TotalFlops(FlopCounterMode):
    """torch's FLOP count of everything run inside, without its per-module breakdown, whose
    backward hooks break the autograd.grad that R1 and R2 take."""

    class NoModules:
        parents = {"Global"}  # every count goes to the total

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return None

    def __init__(self):
        super().__init__(display=False)
        self.mod_tracker = self.NoModules()


def gemm_rate(device: str, n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matrix-multiply rate (GFLOP/s) on a large square product in `dtype`: the ceiling."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = sync(torch.device(device))
        a @ b
        best = min(best, sync(torch.device(device)) - start)
    return 2 * n**3 / best / 1e9


@dataclass
class Args:
    mode: str = "interleaved"  # interleaved | train | writes | augment | data_efficiency | equal_time | metrics | precision[_fid]
    device: str = "auto"  # cpu | cuda | auto (cuda when there is one)
    models: str = "seed,dcgan"  # comma-separated: seed, dcgan, sngan_resnet, r3gan (mode=equal_time: all but seed)
    block: int = 0  # iterations per block (0: 500 on CUDA; 100 seed, 10 DCGAN on CPU)
    rounds: int = 5  # rounds of (default, hand, eager) blocks, after one warm-up block
    overrides: list[str] = field(default_factory=list)  # config overrides for every run: [data.batch_size=64,...]
    sweeps: list[str] = field(default_factory=list)  # mode=data_efficiency, equal_time: finished folders to read, not run
    minutes: float = 20.0  # mode=equal_time: the training budget of each run
    seeds: str = "1,2"  # mode=equal_time, precision_fid: the seeds, trained side by side
    images: int = 0  # mode=metrics: images timed per network (0: 2000 on CUDA; 48 for Inception, 2000 for the classifier on CPU)
    precisions: str = "32-true,bf16-mixed"  # mode=precision, precision_fid: the trainer.precision values, the first the baseline
    iterations: int = 0  # mode=precision_fid: iterations per run (0: each recipe's own trainer.max_steps)
    walk_frames: str = "100,1000"  # mode=walk: the walks' lengths in frames
    slots: int = 3  # mode=workers: trials at a time, as n_jobs and as sweeper processes (at most the cores, to time fairly)


def metrics_cost(args: Args, device: torch.device) -> None:
    """mode=metrics: images/s of each feature network on MNIST-sized images (28x28 grey, what the
    Inception protocols resize to 299x299), and from it what each protocol's evaluation costs:
    its samples every evaluation, the reference split once (then cached). The Inception weights
    are random ones of the right layout (speed does not depend on their values)."""
    from gan.metrics.extractor import Classifier
    from gan.metrics.inception import InceptionFeatures
    from gan.metrics.protocols import parse

    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "inception.pth"
        torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                                   init_weights=False).state_dict(), weights)
        networks = {"classifier": Classifier((1, 28, 28), 10).eval().to(device).features,
                    "inception legacy": InceptionFeatures(str(weights), "legacy"),
                    "inception clean": InceptionFeatures(str(weights), "clean")}
    print(f"device: {device_name(device)}; images 28x28 grey")
    rates = {}
    for name, network in networks.items():
        count = args.images or (2000 if device.type == "cuda" or name == "classifier" else 48)
        images = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8)
        run = network if name == "classifier" else functools.partial(network.features, device=device)
        run(images[: min(count, 8)])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[name] = count / (time.perf_counter() - start)
        print(f"  {name:17s} {rates[name]:10.1f} images/s ({count} images)")
    print("what an evaluation costs (MNIST: 60,000 training and 10,000 test images):")
    for protocol in map(parse, ("classifier10k_test", "fid10k_test", "fid50k_train", "clean_fid50k_train")):
        rate = rates["classifier" if protocol.features == "classifier" else f"inception {protocol.resize}"]
        reference = 60_000 if protocol.reference == "train" else 10_000
        print(f"  {protocol.name:19s} every evaluation {duration(protocol.n / rate):>12s}; "
              f"its reference once {duration(reference / rate):>12s}")


def precision_cost(args: Args, device: torch.device) -> None:
    """mode=precision: each model's it/s under each `trainer.precision`, the runner's default path
    and the hand loop (in the same autocast), from short fits that take turns by round (a
    drifting machine affects every precision alike), and each one's ratio to the first precision
    paired by round: mean ± std. The GEMM rates in float32 and bfloat16 say what the hardware offers."""
    precisions = args.precisions.split(",")
    print(f"device: {device_name(device)}; GEMM float32 {gemm_rate(args.device):.0f} GFLOP/s, "
          f"bfloat16 {gemm_rate(args.device, dtype=torch.bfloat16):.0f} GFLOP/s")
    bench_module = importlib.import_module("gan.bench")
    for model in args.models.split(","):
        block = block_length(args, model, device)
        rates: dict[str, dict[str, list[float]]] = {p: {"default": [], "hand": []} for p in precisions}
        for _ in range(args.rounds):
            for precision in precisions:
                overrides = [*args.overrides, f"trainer.precision={precision}"]
                bench_module.HAND_STEP, _ = hand_setup(model, args.device, *overrides)
                with tempfile.TemporaryDirectory() as run_dir:  # warm-up, default path, hand loop: a block each
                    fit(config(model, args.device, f"trainer.max_steps={2 * block}", *BENCH_FIT, *interleaved(block), *overrides,
                               run_dir=run_dir))
                for path in ("default", "hand"):
                    rates[precision][path].append(bench_module.Interleaved.result[path])
        print(f"\n{model}: {args.rounds} rounds of {block}-iteration blocks")
        base = rates[precisions[0]]
        for precision in precisions:
            for path in ("default", "hand"):
                got = rates[precision][path]
                ratios = [a / b for a, b in zip(got, base[path])]
                spread = f" ± {statistics.stdev(got):.1f}" if len(got) > 1 else ""
                ratio_spread = f" ± {statistics.stdev(ratios):.3f}" if len(ratios) > 1 else ""
                print(f"  {precision:10s} {path:8s} {statistics.mean(got):9.1f}{spread} it/s  "
                      f"{statistics.mean(ratios):.3f}{ratio_spread}x {precisions[0]}")


def precision_fid(args: Args) -> None:
    """mode=precision_fid: each model's recipe trained under each `trainer.precision`, the seeds side
    by side on one thread each (train_pair), then each run's final FID (the project's classifier
    features, 10,000 samples against the 10,000 test images) as mean ± std over the seeds, and
    whether each precision's mean lies within the baseline's seed range. Runs go to
    `outputs/bench/precision-<time>/<model>/<precision>/seed<s>`; `sweeps=[that folder]` scores
    finished runs instead."""
    from gan.evaluate import Args as Scoring  # noqa: PLC0415 (the scoring's imports only here)
    from gan.evaluate import evaluate

    precisions, seeds = args.precisions.split(","), [int(s) for s in str(args.seeds).split(",")]
    top = Path(args.sweeps[0]) if args.sweeps else CONF.parent / "outputs" / "bench" / time.strftime("precision-%Y%m%d-%H%M%S")
    models = args.models.split(",")
    for model in [] if args.sweeps else models:
        steps = args.iterations or compose_train(*MODELS[model], "run_dir=/nonexistent").trainer.max_steps
        for precision in precisions:
            started = time.perf_counter()
            train_pair([*MODELS[model], f"trainer.precision={precision}", *args.overrides], steps, 24 * 60, seeds,
                       top / model / precision)
            print(f"{model} {precision}: {len(seeds)} runs of {steps} iterations in {clock(time.perf_counter() - started)}",
                  flush=True)
    print(f"\nruns in {top}; each on 1 thread, {len(seeds)} side by side; FID on the project's MNIST classifier features, "
          f"10,000 samples against the 10,000 test images; mean ± std over seeds")
    print("| model | precision | iterations | minutes per run | FID | against the baseline's seed range |")
    print("|---|---|---|---|---|---|")
    for model in models:
        base = None
        for precision in precisions:
            runs = sorted((top / model / precision).glob("seed*/status.json"))
            if not runs:
                continue
            facts = [read_status(r.parent) for r in runs]
            fids = [evaluate(Scoring(ckpt=str(r.parent), memorisation=0))["fid"] for r in runs]
            base = base or (min(fids), max(fids))
            spread = f" ± {statistics.stdev(fids):.1f}" if len(fids) > 1 else ""
            mean = statistics.mean(fids)
            inside = ("baseline" if precision == precisions[0] else "within" if base[0] <= mean <= base[1]
                      else "below (better)" if mean < base[0] else "above (worse)")
            print(f"| {model} | {precision} | {statistics.mean(f['metrics']['global_step'] for f in facts):.0f} "
                  f"| {statistics.mean(seconds_in_fit(f) for f in facts) / 60:.1f} | {mean:.1f}{spread} "
                  f"({len(fids)}: {', '.join(f'{x:.1f}' for x in fids)}) | {inside} |", flush=True)


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def bench(args: Args) -> None:
    modes = ("interleaved", "train", "writes", "augment", "data_efficiency", "equal_time", "metrics", "precision",
             "precision_fid", "walk", "workers")
    if args.mode not in modes or args.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"mode={args.mode} device={args.device}: mode is one of {', '.join(modes)}; device cpu, cuda "
                        f"or auto.")
    if args.mode == "data_efficiency":
        return data_efficiency(args)
    if args.mode == "equal_time":
        return equal_time(args)
    if args.mode == "precision_fid":
        return precision_fid(args)
    if args.mode == "train":
        return train_py(args.overrides)
    if args.mode == "writes":
        return writes(args.rounds)
    if args.mode == "walk":
        return walk_memory([int(n) for n in args.walk_frames.split(",")])
    if args.mode == "workers":
        return sweep_throughput(args.iterations or 300, slots=args.slots)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.mode == "augment":
        return augment_cost(args, device)
    if args.mode == "metrics":
        return metrics_cost(args, device)
    if args.mode == "precision":
        return precision_cost(args, device)
    gemm = gemm_rate(args.device)
    print(f"device: {device_name(device)}; float32 GEMM {gemm:.0f} GFLOP/s")
    bench_module = importlib.import_module("gan.bench")  # Hydra builds the callback from gan.bench, not __main__
    for model in args.models.split(","):
        block = block_length(args, model, device)
        bench_module.HAND_STEP, flops = hand_setup(model, args.device, *args.overrides)
        with tempfile.TemporaryDirectory() as run_dir:
            fit(config(model, args.device, f"trainer.max_steps={block * (1 + 2 * args.rounds)}", *BENCH_FIT,
                       *interleaved(block), *args.overrides, run_dir=run_dir))
        rates = bench_module.Interleaved.result
        print(f"\n{model}: {flops / 1e9:.3f} GFLOP per iteration; {args.rounds} rounds of {block}-iteration blocks")
        for k in ("hand", "eager", "default"):
            rate = f"{rates[k]:9.1f} it/s" if rates[k] >= 1 else f"{1 / rates[k]:7.2f} s/it"
            print(f"  {k:8s} {rate}  {rates[k] * flops / 1e9:7.1f} GFLOP/s  {rates[k] / rates['hand']:6.3f}x hand")
        replays = f"; CUDA graph replays: {rates['replays']}" if rates["replays"] else ""
        print(f"  default / eager: {rates['default'] / rates['eager']:.3f}; "
              f"GEMM limit / default: {gemm / (rates['default'] * flops / 1e9):.2f}x{replays}")


def writes(rounds: int) -> None:
    """What writing whole costs: the seed MLP's checkpoint (its weights and Adam's two moments)
    saved by Lightning's TorchCheckpointIO and by gan/files.py (same folder, fsync, rename),
    interleaved, into a folder beside the project (the disk runs write to); and the sha256 every
    cache entry gets on open, per GiB."""
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    from gan.files import digest
    from gan.run.checkpoints.saving import WholeCheckpoints

    with tempfile.TemporaryDirectory() as run_dir:
        state = GAN.from_config(config("seed", "cpu", run_dir=run_dir)).state_dict()
    checkpoint = {"state_dict": state, "optimizer_states": [{k: v.clone() for k, v in state.items()} for _ in range(2)]}
    times: dict[str, list[float]] = {"Lightning's TorchCheckpointIO": [], "gan/files.py": []}
    with tempfile.TemporaryDirectory(dir=CONF.parent) as folder:
        for _ in range(2 * rounds):
            for spent, io in zip(times.values(), (TorchCheckpointIO(), WholeCheckpoints())):
                start = time.perf_counter()
                io.save_checkpoint(checkpoint, Path(folder) / "last.ckpt")
                spent.append(time.perf_counter() - start)
        size = (Path(folder) / "last.ckpt").stat().st_size
        big = Path(folder) / "images.u8"
        big.write_bytes(os.urandom(256 << 20))
        digests = []
        for _ in range(rounds):
            start = time.perf_counter()
            digest(big)
            digests.append(time.perf_counter() - start)
    for name, spent in times.items():
        print(f"save a {size / 2**20:.1f} MiB checkpoint, {name}: {1000 * statistics.mean(spent):.0f} ± "
              f"{1000 * statistics.stdev(spent):.0f} ms ({len(spent)} saves, interleaved)")
    print(f"sha256 of a cache file, warm page cache: {256 / statistics.mean(digests):.0f} MiB/s "
          f"({1000 * statistics.mean(digests) / 256 * 1024:.0f} ms per GiB)")


def peak_memory(command: list[str], cwd: str) -> tuple[float, float]:
    """(seconds, peak resident MiB) of a command run to its end (its own rusage, from wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=functools.partial(die_with_parent, os.getpid()))
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise UserError(f"{' '.join(command[:4])} ... failed: {process.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def walk_memory(lengths: list[int]) -> None:
    """mode=walk: wall time and peak memory of `gan.generate mode=walk` (the seed MLP, 64 samples a
    frame: 242 x 242 px) as the walk grows, for each format: frames are written as they are made,
    so the peak should not grow with the walk."""
    from gan.animations import encoder

    formats = [".gif", ".webp"] + ([".mp4"] if encoder() else [])
    with tempfile.TemporaryDirectory() as folder:
        fit(config("seed", "cpu", "trainer.max_steps=3", "sample_every=0", "callbacks.progress_bar.refresh_rate=0",
                   run_dir=f"{folder}/run"))
        print(f"{'frames':>7} {'format':>7} {'seconds':>8} {'peak MiB':>9} {'file MiB':>9}")
        for count in lengths:
            for suffix in formats:
                out = Path(folder) / f"walk{count}{suffix}"
                seconds, peak = peak_memory([sys.executable, "-m", "gan.generate", f"ckpt={folder}/run", "mode=walk",
                                             "seeds=[0,1]", f"frames={count - 1}", "loop=false", f"out={out}"], folder)
                print(f"{count:7d} {suffix:>7} {seconds:8.1f} {peak:9.0f} {out.stat().st_size / 2**20:9.1f}")


def sweep_throughput(iterations: int, slots: int = 3) -> None:
    """mode=workers: one study of 3 x `slots` trials of the seed MLP, the first 5 times longer than
    the others (5 x `iterations`), run by the batch sweeper (n_jobs=slots through joblib: each batch
    waits for its slowest trial) and by `slots` sweeper processes on the study (each takes the next
    trial as soon as it is free); with more slots than cores the trials slow each other down. Wall
    times, each trial's own time, and two bounds: the sum of the batches' longest trials, and the
    long trial or all the trials spread over the slots, whichever is longer."""
    import optuna

    long, short, trials = 5 * iterations, iterations, 3 * slots
    base = ["hparams_search=optuna_quick", "hydra.sweeper.pruner=none", "eval_every=0", "optimized_metric=loss/g",
            "trainer=cpu", "sample_every=0", "callbacks.progress_bar.refresh_rate=0",
            "callbacks.checkpoint.every_n_train_steps=0", f"trainer.max_steps=choice({short},{long})",
            f"hydra.sweeper.n_trials={trials}"]
    modes = {f"batches of {slots} (n_jobs={slots}, joblib)": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={slots}",
                                                  f"hydra.sweeper.n_jobs={slots}"],
             f"{slots} sweeper processes (workers={slots})": [f"hydra.sweeper.workers={slots}"]}
    print(f"{trials} trials of the seed MLP: the first {long} iterations, the others {short}; {slots} at a time")
    for name, extra in modes.items():
        with tempfile.TemporaryDirectory() as cwd:
            storage = f"sqlite:///{cwd}/outputs/optuna/optuna_quick/optuna.db"
            Path(cwd, "outputs/optuna/optuna_quick").mkdir(parents=True)
            study = optuna.create_study(study_name="optuna_quick", storage=storage)
            for i in range(trials):  # the long trial first: it lands in the first batch, as it would by chance
                study.enqueue_trial({"trainer.max_steps": long if i == 0 else short})
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(CONF.parent / "train.py"), *base, *extra], cwd=cwd,
                                  capture_output=True, text=True, preexec_fn=functools.partial(die_with_parent, os.getpid()))
            wall = time.perf_counter() - start
            if done.returncode:
                raise UserError(f"the {name} sweep failed: {done.stderr[-3000:]}")
            spans = {int(p.parent.name.split("_")[0]): read_status(p.parent)["ended"] - read_status(p.parent)["started"]
                     for p in Path(cwd, "outputs/optuna/optuna_quick").glob("*/status.json")}
            times = [spans[n] for n in sorted(spans)]  # by trial number: the order they were asked in
            others = times[1:]
            batches = sum(max(times[i:i + slots]) for i in range(0, len(times), slots))
            spread = max(times[0], sum(times) / slots)
            print(f"  {name}: {wall:.0f} s wall for {len(times)} trials; the long trial {times[0]:.0f} s, the others "
                  f"{statistics.mean(others):.0f} ± {statistics.stdev(others):.0f} s; batches' slowest summed "
                  f"{batches:.0f} s, the long trial or all over {slots} slots {spread:.0f} s")


def train_py(overrides: list[str]) -> None:
    """Wall time of `python train.py OVERRIDES`, start-up, evaluation and writing included."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(CONF.parent / "train.py"), *overrides,
                               "callbacks.progress_bar.refresh_rate=0"], cwd=cwd, capture_output=True, text=True,
                              preexec_fn=functools.partial(die_with_parent, os.getpid()))  # never outlives the bench
        wall = time.perf_counter() - start
    if done.returncode:
        raise UserError(f"train.py failed ({done.returncode}): {done.stderr[-3000:]}")
    print(f"python train.py {' '.join(overrides)}: {wall:.1f} s wall, start-up and writing included")


def main() -> None:
    resolvers.register()
    run(bench, Args, __doc__)


if __name__ == "__main__":
    main()
