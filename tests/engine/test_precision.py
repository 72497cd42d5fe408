"""Mixed precision: `trainer.precision=bf16-mixed` trains every recipe's update in bfloat16 autocast
(float32 weights, float32 losses and penalties) with finite values throughout, and the gradient
penalties keep their value under `16-mixed`'s float16 by differentiating D's scaled output.
The iterations-per-step and resume equivalences in bf16 are in tests/engine/test_chunks.py (as
are the graph runner's), the GPU runs in tests/engine/test_cuda_graphs.py."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from gan.engine.execution import Execution
from gan.losses import r1_penalty
from gan.module import GAN
from tests.helpers import make_cfg

SMALL_CONV = ("model.generator.width=8", "model.discriminator.width=8", "data.batch_size=32")
RECIPES = {
    "seed": ((), ()),
    "dcgan": (("experiment=dcgan_mnist", *SMALL_CONV), ()),
    "wgan_gp": (("experiment=wgan_gp_mnist", *SMALL_CONV), ("loss/gp",)),
    "r1": (("experiment=dcgan_mnist", *SMALL_CONV, "loss.r1_gamma=10.0", "loss.r2_gamma=1.0"), ("loss/r1", "loss/r2")),
}


class Watch(pl.Callback):
    """The dtypes D's first layer computed in, and every logged loss after each step."""

    def on_train_start(self, trainer, pl_module):
        self.dtypes, self.values = set(), {}
        layer = next(m for m in pl_module.discriminator.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        layer.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))

    def on_train_batch_end(self, trainer, pl_module, *args):
        for key, value in trainer.callback_metrics.items():
            if key.startswith("loss/"):
                self.values.setdefault(key, []).append(float(value))


@pytest.mark.parametrize("name", list(RECIPES))
def test_bf16_mixed_trains_each_recipe_with_finite_losses_and_penalties(name, mnist_root, tmp_path):
    overrides, penalties = RECIPES[name]
    cfg = make_cfg("trainer=cpu", *overrides, run_dir=tmp_path)
    torch.manual_seed(0)
    module, watch = GAN.from_config(cfg), Watch()
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=200, logger=False, enable_checkpointing=False,
                         log_every_n_steps=10, enable_progress_bar=False, enable_model_summary=False, callbacks=[watch])
    trainer.fit(module, datamodule=instantiate(cfg.data, iterations_per_step=10, batches_per_step=GAN.real_batches(cfg)))
    assert trainer.global_step == 200
    assert torch.bfloat16 in watch.dtypes  # D's layers ran in bf16 ...
    assert all(p.dtype == torch.float32 for p in module.parameters())  # ... on float32 weights
    assert {"loss/d", "loss/g", *penalties} <= watch.values.keys()
    for key, values in watch.values.items():
        assert len(values) == 20 and all(math.isfinite(v) for v in values), key
    for key in penalties:  # a penalty that underflowed to nothing would be finite too
        assert max(watch.values[key]) > 0, key


def tiny_critic() -> nn.Module:
    """A critic whose input gradients (about 1e-7) lie below float16's normal range."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Linear(16, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 1e-4)
    return net


def test_the_scaled_r1_penalty_keeps_its_value_in_float16_where_the_unscaled_one_loses_it():
    net, images = tiny_critic(), torch.randn(8, 1, 4, 4)
    x = images.clone().requires_grad_(True)
    exact = r1_penalty(net(x), x).item()  # float32 throughout
    results = {}
    for scale in (None, torch.tensor(1024.0)):
        x = images.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False):
            results[scale is None] = r1_penalty(net(x).float(), x, scale).item()
    assert abs(results[False] - exact) < 1e-2 * exact  # scaled: float16's rounding only
    assert abs(results[True] - exact) > 0.1 * exact  # unscaled: the gradients underflowed


def test_the_penalty_scale_is_the_gradient_scalers_own():
    execution = Execution()
    assert execution.penalty_scale(torch.device("cpu")) is None  # no scaler: the penalties differentiate D's output as it is
    execution.scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    assert execution.penalty_scale(torch.device("cpu")).item() == 512.0
    execution.scaler.update(256.0)
    assert execution.penalty_scale(torch.device("cpu")).item() == 256.0
