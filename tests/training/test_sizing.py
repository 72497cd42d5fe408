"""What cannot train is refused from the networks' shapes, before they are built."""

from __future__ import annotations

import pytest
import torch

from gan.errors import UserError
from gan.training import sizing
from gan.training.sizing import check_before_building
from tests.helpers import make_cfg


def test_a_batch_of_one_per_process_with_batchnorm_is_refused_and_without_it_allowed():
    with pytest.raises(UserError) as refused:
        check_before_building(make_cfg("data.batch_size=2", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"))
    assert "each of the run's 2 processes a batch of 1" in str(refused.value) and "in G:" in str(refused.value)
    check_before_building(make_cfg("data.batch_size=1", "model.generator.batch_norm=false"))  # the MLP's D has none
    check_before_building(make_cfg("data.batch_size=2"))


def test_the_memory_floor_counts_weights_gradients_moments_and_the_average(monkeypatch):
    cfg = make_cfg()
    with torch.device("meta"):
        from gan.config.building import build

        params = sum(p.numel() for name in ("generator", "discriminator") for p in build(cfg, f"model.{name}").parameters())
    floor = 4 * params * 4  # Adam: weights, gradients, two moments
    monkeypatch.setattr(sizing, "available_memory", lambda: floor - 1)
    with pytest.raises(UserError, match="weights, gradients and Adam state take at least"):
        check_before_building(cfg)
    monkeypatch.setattr(sizing, "available_memory", lambda: floor)
    check_before_building(cfg)
    with pytest.raises(UserError):  # G's weight average is one more copy of G
        check_before_building(make_cfg("gan.ema_decay=0.999"))
    check_before_building(make_cfg("optimizer=sgd"))  # no moments without momentum


def test_on_a_gpu_the_training_state_is_checked_against_the_gpus_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2**20, 80 * 2**30))
    with pytest.raises(UserError, match="too large for the GPU"):
        check_before_building(make_cfg("trainer=gpu"))
    check_before_building(make_cfg("trainer=cpu"))
