"""Several GAN iterations per training step (gan/engine/chunks.py) are the same as one per step, bit
for bit, with every event on its iteration; the CUDA-graph runner's logic, with an eager stand-in
for the capture so that it runs on a CPU (tests/engine/test_cuda_graphs.py runs the real one on a GPU)."""

from __future__ import annotations

from functools import wraps
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from gan.callbacks import IterationProgressBar
from gan.engine.chunks import chunk_length, event_intervals, iterations_per_step
from gan.engine.cuda_graphs import GraphedIterations, reason_not_to_capture
from gan.module import GAN
from gan.training.fit import fit
from tests.helpers import SMALL_R3GAN, SMALL_RESNET, events, make_cfg


def test_chunks_end_on_every_event_and_at_max_steps():
    intervals, ends, step = [5, 6, 50], [], 0
    while step < 64:
        step += chunk_length(step, 7, intervals, max_steps=64)
        ends.append(step)
    events_ = {s for i in intervals for s in range(i, 65, i)} | {64}
    assert events_ <= set(ends)  # every event is the end of a chunk ...
    assert all(b - a <= 7 for a, b in zip([0, *ends], ends))  # ... and no chunk is longer than the cap
    assert chunk_length(17, 25, [50], max_steps=30) == 13
    assert iterations_per_step("auto", "cpu") == 25 and iterations_per_step("auto", "cuda:0") == 200
    assert iterations_per_step(3, "cuda") == 3


def run(tmp_path: Path, name: str, k: int, *overrides: str) -> Path:
    """A short CPU run with `iterations_per_step=k`: logs every 5, grids every 10, checkpoints every 6;
    k=7 divides none of them."""
    run_dir = tmp_path / name
    fit(make_cfg("trainer=cpu", "eval_every=0", "trainer.log_every_n_steps=5", "sample_every=10",
                 "callbacks.checkpoint.every_n_train_steps=6", "callbacks.last.every_n_train_steps=6",
                 "callbacks.progress_bar.refresh_rate=0", f"iterations_per_step={k}", *overrides, run_dir=run_dir))
    return run_dir


def assert_same_tensors(a, b, where: str = "") -> None:
    """Equal nested dicts/lists of tensors and numbers, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_runs(a: Path, b: Path) -> None:
    """Weights, BatchNorm statistics, EMA and optimizer states of every checkpoint, every
    logged scalar at its iteration, and the same files."""
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == sorted(p.name for p in (b / "checkpoints").iterdir())
    assert sorted(p.name for p in (a / "images").iterdir()) == sorted(p.name for p in (b / "images").iterdir())
    for ckpt in (a / "checkpoints").iterdir():
        x, y = (torch.load(d / "checkpoints" / ckpt.name, weights_only=True) for d in (a, b))
        assert x["global_step"] == y["global_step"]
        for key in ("state_dict", "optimizer_states"):
            assert_same_tensors(x[key], y[key], f"{ckpt.name}:{key}")
    ea, eb = events(a), events(b)
    tags = [t for t in ea.Tags()["scalars"] if t.startswith(("loss/", "train/", "warnings/"))]
    assert "loss/d" in tags and set(tags) == {t for t in eb.Tags()["scalars"] if t.startswith(("loss/", "train/", "warnings/"))}
    for tag in tags:
        assert [(e.step, e.value) for e in ea.Scalars(tag)] == [(e.step, e.value) for e in eb.Scalars(tag)], tag


CONFIGURATIONS = {
    "seed": ["trainer.max_steps=200"],
    "dcgan": ["experiment=dcgan_mnist", "trainer.max_steps=40", "model.generator.width=8",
              "model.discriminator.width=8"],
    "conditional": ["experiment=cgan_mnist", "trainer.max_steps=120"],
    "wgan_gp": ["experiment=wgan_gp_mnist", "trainer.max_steps=40", "model.generator.width=8",
                "model.discriminator.width=8"],
    "ema": ["gan.ema_decay=0.9", "gan.fakes_mode=train", "trainer.max_steps=120"],
    "seed_bf16": ["trainer.precision=bf16-mixed", "trainer.max_steps=200"],
    "dcgan_bf16": ["experiment=dcgan_mnist", "model.generator.width=8", "model.discriminator.width=8",
                   "trainer.precision=bf16-mixed", "trainer.max_steps=40"],
    "resnet": [*SMALL_RESNET, "trainer.max_steps=40"],
    "r3gan": [*SMALL_R3GAN, "trainer.max_steps=40"],
    # R3GAN's schedules over 800 images (25 iterations of 32), ADA's p among them
    "schedule": [*SMALL_R3GAN, "augment=ada", "augment.target=null", "schedule.kimg=0.8", "schedule.lr=1e-5",
                 "schedule.beta2=0.99", "schedule.r1_gamma=0.005", "schedule.r2_gamma=0.005", "schedule.ema_kimg=0.3",
                 "schedule.aug_p=0.5", "trainer.max_steps=40"],
}


RESIDUAL = ("resnet", "r3gan", "schedule")  # minutes of CPU between them: run with the slow tests


def names(*chosen: str) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in RESIDUAL else n for n in chosen]


@pytest.mark.parametrize("name", names(*CONFIGURATIONS))
def test_seven_iterations_per_step_are_seven_steps_bit_for_bit(name, mnist_root, tmp_path):
    one = run(tmp_path, "one", 1, *CONFIGURATIONS[name])
    seven = run(tmp_path, "seven", 7, *CONFIGURATIONS[name])
    assert_same_runs(one, seven)
    steps = [e.step for e in events(seven).Scalars("loss/d")]
    assert steps[:3] == [5, 10, 15]


@pytest.mark.parametrize("name", names("seed", "seed_bf16", "r3gan", "schedule"))
def test_resuming_a_checkpoint_taken_mid_chunk_plan_matches_the_uninterrupted_run(name, mnist_root, tmp_path):
    recipe = [*CONFIGURATIONS[name][:-1], "trainer.max_steps=40"]
    straight = run(tmp_path, "straight", 7, *recipe)
    resumed = run(tmp_path, "resumed", 7, *recipe, f"ckpt_path={straight / 'checkpoints' / 'step_000018.ckpt'}")
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (straight, resumed))
    assert a["global_step"] == b["global_step"] == 40
    assert_same_tensors(a["state_dict"], b["state_dict"])
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"])
    assert [e.step for e in events(resumed).Scalars("loss/d")] == [20, 25, 30, 35, 40]


class ChangeLearningRate(pl.Callback):
    """Halves both learning rates after iteration `at`, as a scheduler or a resume with new values would."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.at:
            for opt in trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] /= 2


class EagerCapture(pl.Callback):
    """Runs the module through GraphedIterations with a stand-in capture that replays by calling the
    captured function again, so everything around the graph (warm-up, static inputs, counting,
    re-capture) is what a GPU run does. Like a graph's, its replays ignore the autocast around
    them: what a captured iteration computes in is what it entered itself."""

    def __init__(self):
        self.captured = []

    def capture(self, fn):
        self.captured.append(fn)

        def replay():
            with torch.autocast("cpu", enabled=False):
                return fn()

        return replay

    def on_train_batch_start(self, trainer, pl_module, *args):
        execution = pl_module.execution
        if execution.graphed is None:  # after the module's on_train_start, which finds no CUDA device
            assert reason_not_to_capture(pl_module, execution) == "not on a CUDA device"
            execution.graphed = GraphedIterations(pl_module, execution, warmup=3, capture=self.capture)


def train(cfg, k: int, max_steps: int, callbacks: list) -> tuple[GAN, pl.Trainer]:
    """`cfg`'s module and data on a bare Trainer (no loggers or checkpoints), `k` iterations per step."""
    torch.manual_seed(0)
    module = GAN.from_config(cfg)
    trainer = pl.Trainer(accelerator="cpu", precision=cfg.trainer.precision, max_steps=max_steps, logger=False,
                         enable_checkpointing=False, log_every_n_steps=5,
                         enable_progress_bar=any(isinstance(c, IterationProgressBar) for c in callbacks),
                         enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, datamodule=instantiate(cfg.data, iterations_per_step=k, batches_per_step=GAN.real_batches(cfg)))
    return module, trainer


@pytest.mark.parametrize("ema", [False, True])
def test_graph_runner_logic_matches_eager_training_and_recaptures_when_the_learning_rate_changes(ema, mnist_root, tmp_path):
    cfg = make_cfg("trainer=cpu", *(["gan.ema_decay=0.9"] if ema else []), run_dir=tmp_path)
    eager, _ = train(cfg, k=7, max_steps=30, callbacks=[ChangeLearningRate(20)])
    graphed, trainer = train(cfg, k=7, max_steps=30, callbacks=[ChangeLearningRate(20), EagerCapture()])
    assert trainer.global_step == 30
    runner = graphed.execution.graphed
    assert (runner.eager_iterations, runner.replayed, runner.captures) == (3, 27, 2)  # warm-up, replays, one re-capture
    assert_same_tensors(eager.state_dict(), graphed.state_dict())
    for a, b in zip(eager.optimizers(), graphed.optimizers()):
        assert_same_tensors(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"])
        assert all(g["capturable"] for g in b.optimizer.param_groups)
    assert float(trainer.callback_metrics["loss/d"]) == float(eager.trainer.callback_metrics["loss/d"])


def test_graph_runner_logic_replays_a_bf16_autocast_iteration_as_eager_training(mnist_root, tmp_path):
    cfg = make_cfg("trainer=cpu", "trainer.precision=bf16-mixed", run_dir=tmp_path)
    eager, _ = train(cfg, k=7, max_steps=30, callbacks=[])
    graphed, trainer = train(cfg, k=7, max_steps=30, callbacks=[EagerCapture()])
    runner = graphed.execution.graphed
    assert (runner.eager_iterations, runner.replayed, runner.captures) == (3, 27, 1)
    assert_same_tensors(eager.state_dict(), graphed.state_dict())
    for a, b in zip(eager.optimizers(), graphed.optimizers()):
        assert_same_tensors(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"])
    fp32, _ = train(make_cfg("trainer=cpu", run_dir=tmp_path), k=7, max_steps=30, callbacks=[])
    assert not torch.equal(next(fp32.generator.parameters()), next(eager.generator.parameters()))  # bf16 changed the numbers


@pytest.mark.slow
@pytest.mark.parametrize("name, patterns", [("resnet", 1), ("r3gan", 2)])
def test_graph_runner_logic_replays_each_residual_recipe_as_eager_training(name, patterns, mnist_root, tmp_path):
    """R3GAN's lazy penalties make two kinds of iteration (with and without them): one capture each."""
    cfg = make_cfg("trainer=cpu", *CONFIGURATIONS[name][:-1], run_dir=tmp_path)
    eager, _ = train(cfg, k=7, max_steps=30, callbacks=[])
    graphed, trainer = train(cfg, k=7, max_steps=30, callbacks=[EagerCapture()])
    runner = graphed.execution.graphed
    assert (runner.eager_iterations, runner.replayed, runner.captures) == (3, 27, patterns)
    assert_same_tensors(eager.state_dict(), graphed.state_dict())
    for a, b in zip(eager.optimizers(), graphed.optimizers()):
        assert_same_tensors(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"])


def test_event_intervals_come_from_the_trainer_and_every_callback(mnist_root, tmp_path):
    from gan.callbacks import SampleGrid
    from gan.engine.lightning_adapter import Checkpoint

    trainer = pl.Trainer(accelerator="cpu", log_every_n_steps=50, logger=False, callbacks=[
        SampleGrid(str(tmp_path), every_n_steps=200), Checkpoint("c", dirpath=str(tmp_path), every_n_train_steps=500)])
    assert event_intervals(trainer) == [50, 200, 500]


def test_sample_every_0_writes_only_the_final_grid(mnist_root, tmp_path):
    """A timed benchmark turns the grids off without losing the last one (k=7: chunks ignore the 0)."""
    run_dir = run(tmp_path, "end-only", 7, "sample_every=0", "trainer.max_steps=12")
    assert sorted(p.name for p in (run_dir / "images").glob("*.png")) == ["000012.png"]


def test_the_progress_bar_counts_gan_iterations(mnist_root, tmp_path):
    bar = IterationProgressBar(refresh_rate=5)
    shown = []
    bar.on_train_batch_end = wraps(bar.on_train_batch_end)(lambda *a: (bar.__class__.on_train_batch_end(bar, *a),
                                                                        shown.append(bar.train_progress_bar.n)))
    train(make_cfg("trainer=cpu", run_dir=tmp_path), k=7, max_steps=23, callbacks=[bar])
    assert bar.train_progress_bar.total == 23 and shown[-1] == 23
    assert shown == [5, 10, 15, 20, 23] or set(shown) >= {5, 10, 15, 20, 23}
