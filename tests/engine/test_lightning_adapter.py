"""One test per use of Lightning internals (gan/engine/lightning_adapter.py): a Lightning release that
changes one fails here, by name."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import scalar

from gan.engine.lightning_adapter import (
    Checkpoint,
    checkpoint_every_n_steps,
    checkpoint_state_key,
    count_iteration,
    lightning_steps_reason,
    publish_metrics,
    skip_graph_capture_check,
    sync_logging_step,
    tensorboard_writer,
    uncounted_optimizer_step,
)
from tests.helpers import events
from tests.test_module import FixedBatches, build


def test_checkpoint_state_key_is_lightnings_key_with_the_name_added():
    ours = checkpoint_state_key(ModelCheckpoint(every_n_train_steps=5, monitor="x"), "last")
    lightnings = ModelCheckpoint(every_n_train_steps=5, monitor="x").state_key
    assert ours.replace("'name': 'last', ", "") == lightnings  # every field Lightning keys by, and the name
    a, b = Checkpoint(name="a", every_n_train_steps=5), Checkpoint(name="b", every_n_train_steps=5)
    assert a.state_key != b.state_key  # same interval, states kept apart


def test_tensorboard_writer_writes_into_the_loggers_event_file(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="", version="")
    tensorboard_writer(logger).add_summary(scalar("probe", 1.5), 7)
    logger.experiment.flush()
    assert [(e.step, e.value) for e in events(tmp_path).Scalars("probe")] == [(7, 1.5)]


class Publish(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        publish_metrics(trainer, {"metrics/fid": 10.0 - trainer.global_step})


def test_published_metrics_reach_a_monitoring_checkpoint(tmp_path):
    best = ModelCheckpoint(dirpath=tmp_path, monitor="metrics/fid", mode="min", save_top_k=1, every_n_train_steps=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Publish(), best])
    trainer.fit(build(), datamodule=FixedBatches())
    assert float(trainer.callback_metrics["metrics/fid"]) == 6.0
    assert float(best.best_model_score) == 6.0  # the checkpoint read the published value (at step 4: 10 - 4)


def test_an_uncounted_optimizer_step_updates_without_advancing_global_step():
    module = build()
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(module, datamodule=FixedBatches())
    d_opt = module.optimizers()[1]
    before = [p.detach().clone() for p in module.discriminator.parameters()]
    module.discriminator(torch.rand(4, 1, 28, 28)).sum().backward()
    uncounted_optimizer_step(trainer, d_opt.optimizer)
    assert trainer.global_step == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, module.discriminator.parameters()))


def test_counted_iterations_advance_global_step_and_the_logging_count_follows(tmp_path):
    module = build()
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(module, datamodule=FixedBatches())
    for _ in range(5):
        count_iteration(trainer)
    assert trainer.global_step == 6
    sync_logging_step(trainer)
    assert trainer.fit_loop.epoch_loop._batches_that_stepped + 1 == trainer.global_step  # what Lightning logs at
    assert checkpoint_every_n_steps(Checkpoint("c", dirpath=str(tmp_path), every_n_train_steps=7)) == 7
    assert checkpoint_every_n_steps(pl.Callback()) is None


class GradientWatcher(pl.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        pass


def test_steps_go_through_lightning_only_when_a_hook_or_a_scaler_needs_them():
    def reason(**kwargs):
        trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, **kwargs)
        trainer.fit(build(), datamodule=FixedBatches())
        return lightning_steps_reason(trainer)

    assert reason() is None
    assert reason(callbacks=[GradientWatcher()]) == "GradientWatcher hook into each backward or optimizer step"


def test_a_cpu_optimizer_can_skip_the_graph_capture_check():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], fused=True)
    assert callable(opt._accelerator_graph_capture_health_check)  # the torch method this replaces
    skip_graph_capture_check(opt)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.all(p < 1)
