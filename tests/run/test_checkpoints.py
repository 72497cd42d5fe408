"""A run's checkpoints (gan/run/checkpoints/): ones written by an earlier version still load and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan.run.checkpoints.files import load_generator
from gan.samples import generate
from gan.training.fit import fit
from tests.helpers import make_cfg, quick

WRITTEN_BEFORE = Path(__file__).parents[1] / "fixtures" / "conditional_ema_f099e64.ckpt"  # by main at f099e64, before the rooms
# python train.py trainer=cpu eval_every=0 trainer.max_steps=4 model.latent_dim=8 "model.generator.hidden_dims=[16]"
#   "model.discriminator.hidden_dims=[16]" model.conditional=true gan.ema_decay=0.9 seed=7 (and small intervals); its
# samples: python -m gan.generate ckpt=<it> n=10 out=conditional_ema_f099e64_samples.npy, on that main too


def test_a_checkpoint_of_the_previous_layout_gives_the_same_samples_and_resumes(mnist_root, tmp_path):
    generator, config, _ = load_generator(str(WRITTEN_BEFORE))
    assert config.values["model"]["generator"]["_target_"] == "gan.networks.MLPGenerator"
    then = torch.from_numpy(np.load(WRITTEN_BEFORE.with_name("conditional_ema_f099e64_samples.npy")))
    # bit for bit on the CPU that wrote them; MKL's kernels differ in the last bit from one CPU model to another
    assert torch.allclose(generate(generator, 10, 0), then, rtol=0, atol=1e-6)
    model = ["model.latent_dim=8", "model.generator.hidden_dims=[16]", "model.discriminator.hidden_dims=[16]",
             "model.conditional=true", "gan.ema_decay=0.9", "seed=7"]
    metrics = fit(make_cfg(*quick(*model, "trainer.max_steps=6", f"ckpt_path={WRITTEN_BEFORE}"), run_dir=tmp_path))
    assert metrics["global_step"] == 6
