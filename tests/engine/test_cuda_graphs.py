"""On a CUDA device: iterations replayed from a CUDA graph train as eager kernels do (within float
tolerance; step counts exact), and the graph is used, in float32 and under bf16 autocast; under
16-mixed (eager, through the gradient scaler) the gradient penalties stay finite. Skipped without
a GPU (gan.device_check runs them); the logic around the graph has CPU tests in
tests/engine/test_chunks.py, mixed precision on a CPU in tests/engine/test_precision.py."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from gan.module import GAN
from tests.helpers import SMALL_R3GAN, SMALL_RESNET, make_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL_CONV = ["model.generator.width=16", "model.discriminator.width=16"]
CONFIGURATIONS = {
    "seed": [],
    "dcgan": ["experiment=dcgan_mnist", *SMALL_CONV],
    "conditional": ["experiment=cgan_mnist"],
    "wgan_gp": ["experiment=wgan_gp_mnist", *SMALL_CONV],
    "ema": ["gan.ema_decay=0.999", "gan.fakes_mode=train"],
    "diffaug": ["experiment=dcgan_mnist", *SMALL_CONV, "augment=diffaug"],
    "ada": ["augment=ada", "augment.kimg=5", "loss.r1_gamma=1.0"],
    "resnet": list(SMALL_RESNET),
    "r3gan": list(SMALL_R3GAN),
}


def train(overrides: list[str], graph: bool, steps: int = 200, precision: str = "32-true") -> GAN:
    cfg = make_cfg("trainer=gpu", f"gan.cuda_graph={str(graph).lower()}", *overrides, run_dir="/nonexistent")
    pl.seed_everything(0, verbose=False)
    module = GAN.from_config(cfg)
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision=precision, max_steps=steps, logger=False,
                         enable_checkpointing=False, log_every_n_steps=50, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=instantiate(cfg.data, iterations_per_step="auto", batches_per_step=GAN.real_batches(cfg)))
    return module


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_graph_replays_train_as_eager_kernels_do(name, mnist_root):
    eager = train(CONFIGURATIONS[name], graph=False)
    graphed = train(CONFIGURATIONS[name], graph=True)
    runner = graphed.execution.graphed
    lazy = "loss.penalty_every=4" in CONFIGURATIONS[name]  # iterations with and without the penalties: a graph each
    assert runner is not None and runner.captures == len(runner.replays) == (2 if lazy else 1)
    assert runner.replayed == 200 - runner.warmup and eager.execution.graphed is None
    for key, value in eager.state_dict().items():  # weights, BatchNorm statistics, the EMA
        other = graphed.state_dict()[key]
        if value.is_floating_point():
            assert torch.allclose(value, other, rtol=1e-3, atol=1e-4), key
        else:
            assert torch.equal(value, other), key  # num_batches_tracked, n_averaged
    for a, b in zip(eager.optimizers(), graphed.optimizers()):
        for state_a, state_b in zip(a.optimizer.state.values(), b.optimizer.state.values()):
            assert float(state_a["step"]) == float(state_b["step"])  # Adam's step counts exact
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(state_a[moment], state_b[moment], rtol=1e-3, atol=1e-6), moment


@pytest.mark.parametrize("name", ["seed", "dcgan", "wgan_gp", "r3gan"])
def test_bf16_graph_replays_train_as_bf16_eager_kernels_do(name, mnist_root):
    """The tolerance is wider than float32's (bfloat16 rounds at 8 bits), over 50 iterations."""
    eager = train(CONFIGURATIONS[name], graph=False, steps=50, precision="bf16-mixed")
    graphed = train(CONFIGURATIONS[name], graph=True, steps=50, precision="bf16-mixed")
    runner = graphed.execution.graphed
    assert runner is not None and runner.captures >= 1 and runner.replayed == 50 - runner.warmup
    for key, value in eager.state_dict().items():
        other = graphed.state_dict()[key]
        if value.is_floating_point():
            assert torch.allclose(value, other, rtol=2e-2, atol=2e-3), key
        else:
            assert torch.equal(value, other), key


@pytest.mark.parametrize("name", ["wgan_gp", "r1"])
def test_16_mixed_keeps_the_gradient_penalties_finite(name, mnist_root):
    overrides = CONFIGURATIONS["wgan_gp"] if name == "wgan_gp" else [*CONFIGURATIONS["dcgan"], "loss.r1_gamma=10.0"]
    module = train(overrides, graph=True, steps=200, precision="16-mixed")
    assert module.execution.scaler is not None and module.execution.graphed is None  # through the scaler, eagerly
    logged = {k: float(v) for k, v in module.trainer.callback_metrics.items() if k.startswith("loss/")}
    penalty = "loss/gp" if name == "wgan_gp" else "loss/r1"
    assert penalty in logged and logged[penalty] > 0 and all(math.isfinite(v) for v in logged.values()), logged
    assert all(torch.isfinite(p).all() for p in module.parameters())
