"""How a fit executes the GAN's iterations, so that gan/module.py holds the update's maths alone.

For each fit (from `on_train_start`) it decides and holds:
- the path of every backward pass and optimizer step: straight on the torch optimizers (no
  per-step Lightning hooks to pay for), unless something needs each one to go through
  Lightning's strategy and precision plugin (a gradient scaler, a strategy of several processes
  other than ours, a callback hooking into each step);
- each iteration's random draws, from (seed, iteration) for the global batch (gan/engine/draws.py);
- the networks as the optimizer steps call them: the process replicas of trainer=ddp
  (gan/engine/distributed.py), else the networks themselves;
- on a CUDA device, the captured iteration replayed from a CUDA graph (gan/engine/cuda_graphs.py);
- the count of GAN iterations in `global_step` and Lightning's logging step (gan/engine/lightning_adapter.py);
- under `16-mixed`, the gradient scaler's scale for the gradient penalties' own gradients.

Outside a fit (tests, gan.bench's hand loop) a module executes eagerly, straight on its optimizers.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from gan.engine.cuda_graphs import GraphedIterations
from gan.engine.draws import IterationDraws
from gan.engine.lightning_adapter import (
    count_iteration,
    gradient_scaler,
    lightning_steps_reason,
    skip_graph_capture_check,
    sync_logging_step,
    uncounted_optimizer_step,
)


def precision_problems(cfg) -> list[str]:
    """Why `trainer.precision` cannot train this GAN as asked (gan.training.schema.validate prints them):
    half-precision weights, and float16 autocast without a GPU."""
    trainer = cfg["trainer"]
    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator"))
    if precision in ("16-true", "bf16-true"):
        return [f"`trainer.precision={precision}` trains half-precision weights, whose rounding swallows most of "
                f"Adam's steps (bfloat16 keeps 8 significant bits: a weight near 0.05 moves in steps of 2.4e-4, more "
                f"than a step at lr 2e-4): use bf16-mixed (float32 weights and optimizer state, bfloat16 matrix "
                f"products), or 16-mixed on a GPU"]
    if precision == "16-mixed" and (accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())):
        return ["`trainer.precision=16-mixed` is float16 autocast with a gradient scaler, which needs a GPU "
                "(on a CPU Lightning would run bf16-mixed instead): use bf16-mixed here, or trainer=gpu"]
    return []


class Execution:
    """Eager steps on the module's own networks, until `start` fits it to a trainer."""

    def __init__(self):
        self.trainer: pl.Trainer | None = None
        self.through_lightning: str | None = None  # why steps go through Lightning (None: straight on the optimizers)
        self.draws: IterationDraws | None = None
        self.replicas: tuple[nn.Module, nn.Module] | None = None  # G and D as several processes step them
        self.graphed: GraphedIterations | None = None
        self.scaler = None  # 16-mixed: the precision plugin's GradScaler

    def start(self, module: pl.LightningModule) -> None:
        trainer = self.trainer = module.trainer
        self.through_lightning = lightning_steps_reason(trainer)
        self.scaler = gradient_scaler(trainer)
        data, loss = trainer.datamodule, module.loss
        self.draws = IterationDraws(module.generator, module.n_critic, data.batch_size, data.seed, module.device,
                                    rank=trainer.global_rank, world=trainer.world_size, penalty=bool(loss.gp_weight),
                                    augment=module.augment, size=tuple(module.generator.out_shape[-2:]),
                                    pairs=loss.pairs, lazy=loss.penalized if loss.penalty_every > 1 else None)
        self.replicas = getattr(trainer.strategy, "replicas", None)
        if module.device.type == "cpu":
            for opt in module.optimizers():
                skip_graph_capture_check(opt.optimizer)
        self.graphed = GraphedIterations.for_module(module, self) if module.cuda_graph else None

    def networks(self, module: pl.LightningModule) -> tuple[nn.Module, nn.Module]:
        """(G, D) as their own optimizer steps call them."""
        return self.replicas or (module.generator, module.discriminator)

    def run(self, module: pl.LightningModule, chunk) -> tuple:
        """The chunk's iterations, each as a training step of its own would run it; the last one's outputs."""
        if self.graphed is not None:
            outputs = self.graphed.run(chunk)
        else:
            for reals, labels in chunk:
                if module.schedule is not None:  # the values of this iteration, from the images trained on before it
                    module.schedule.apply(module, module.global_step * self.draws.batch)
                outputs = module.iteration(reals, labels, self.draws(module.global_step))
                count_iteration(self.trainer)
        sync_logging_step(self.trainer)
        return outputs

    def penalty_scale(self, device: torch.device) -> torch.Tensor | None:
        """What a gradient penalty multiplies D's output by before differentiating it, and divides
        the gradient by after: under `16-mixed` the scaler's scale (on the device, no host sync),
        so that the half-precision backward pass inside the penalty neither underflows nor, with the
        scale too high, escapes the scaler (an infinite penalty makes infinite gradients, and the
        scaler skips that step and lowers its scale, as for any overflow); else None."""
        return None if self.scaler is None else self.scaler.scale(torch.ones((), device=device))

    def step(self, module: pl.LightningModule, optimizer, loss: torch.Tensor) -> None:
        """One backward pass and optimizer step. `global_step` counts GAN iterations (`run`), so
        no optimizer step advances it."""
        optimizer = getattr(optimizer, "optimizer", optimizer)  # the torch optimizer inside a LightningOptimizer
        optimizer.zero_grad(set_to_none=True)
        if self.through_lightning:  # through the strategy and precision plugin, with their hooks
            module.manual_backward(loss)
            uncounted_optimizer_step(self.trainer, optimizer)
        else:
            loss.backward()
            optimizer.step()
