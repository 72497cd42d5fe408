"""Several devices and nodes: Lightning's DDP, with G and D each in its own DistributedDataParallel
(`trainer=ddp`, `trainer.devices=N`, `trainer.num_nodes=M`).

Why not one wrapper around the whole module, as Lightning's `ddp` does: an iteration runs three
backward passes (D on reals, D on fakes, G through a frozen D), and each one touches only one
network's parameters. One wrapper around both would find half its parameters unused at every
backward, so it would need `find_unused_parameters` (a walk of the autograd graph per backward)
and would all-reduce both networks' gradient buckets three times per iteration. One wrapper per
network all-reduces exactly the gradients its step uses, overlapped with that backward pass, and
the G step calls the bare D (frozen, nothing to reduce) so D's wrapper is only armed by D steps.

The batch and the noise stay global: iteration t draws `data.batch_size` indices and the noise
for them from (seed, t), and each process keeps its consecutive slice (gan/data/batches.py,
gan/engine/draws.py), so W processes train on what one would. BatchNorm normalises each process's
slice unless `trainer.sync_batchnorm=true` (CUDA only: torch's SyncBatchNorm has no CPU kernel).
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel

# Launchers that start a sweep job's processes themselves (one task per device), so Lightning
# need not re-run the command to start them (which, for `-m`, would start the whole sweep again).
PROCESS_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",)


class GANDDPStrategy(DDPStrategy):
    """Lightning's DDPStrategy (its launcher, process group, cluster environments and
    checkpointing), wrapping the module's two networks instead of the module."""

    KWARGS_GO_TO = DistributedDataParallel  # DDPStrategy passes its other keyword arguments on (gan.training.schema reads this)
    replicas: tuple[torch.nn.Module, torch.nn.Module] | None = None  # (G, D) as the optimizer steps call them
    replicas_identical: bool | None = None  # whether every process ended with the same weights (checked at train end)

    def configure_ddp(self) -> None:
        """Each network in its own wrapper, kept out of the module's children, so checkpoints
        hold each weight once, under its own name (gan/engine/execution.py hands them to the steps)."""
        module, device_ids = self.lightning_module, self.determine_ddp_device_ids()
        self.replicas = tuple(DistributedDataParallel(net, device_ids=device_ids, **self._ddp_kwargs)
                              for net in (module.generator, module.discriminator))

    def on_train_end(self) -> None:
        trainer = self.lightning_module.trainer
        if trainer.world_size > 1:
            self.replicas_identical = replicas_identical(trainer, self.lightning_module)

    def teardown(self) -> None:
        self.replicas = None
        super().teardown()


def cluster_plugins() -> list:
    """Under SLURM, Lightning's SLURM environment without its own requeue (on SIGUSR1): requeueing
    is gan/run/signals.py's, so that one mechanism acts, not two."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def world_size(trainer_cfg: Any) -> int | None:
    """Processes of a run as its trainer config says (devices x nodes), or None when `devices`
    is not a number (auto, a list) and only the Trainer will know."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    if not isinstance(devices, int) or isinstance(devices, bool):
        return None
    return devices * int(trainer_cfg.get("num_nodes", 1) or 1)


def processes_per_node(trainer_cfg: Any) -> int:
    """How many processes of the run share this machine (its devices per node)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices
    on_gpu = trainer_cfg.get("accelerator", "auto") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.cuda.device_count() if on_gpu else 1  # Lightning's `auto`: every GPU, or one CPU process


def strategy_name(trainer_cfg: Any) -> str:
    strategy = trainer_cfg.get("strategy", "auto")
    return strategy.get("_target_", "") if hasattr(strategy, "get") else str(strategy)


def problems(cfg: Any, multirun: bool, launcher: str | None) -> list[str]:
    """One line per refused combination of the distributed keys (gan.training.schema.validate prints them)."""
    trainer, found = cfg["trainer"], []
    world = world_size(trainer)
    ours = strategy_name(trainer).endswith("GANDDPStrategy")
    if world is not None and world > 1 and not ours:
        found.append(f"`trainer.devices={trainer.get('devices')}` x `trainer.num_nodes={trainer.get('num_nodes', 1)}` "
                     f"needs trainer=ddp (G and D each in its own DistributedDataParallel, gan/engine/distributed.py); "
                     f"trainer.strategy={strategy_name(trainer)!r} is not made for this update")
    if world is not None and cfg["data"]["batch_size"] % world:
        found.append(f"`data.batch_size={cfg['data']['batch_size']}` is the global batch, split evenly among "
                     f"trainer.devices x trainer.num_nodes = {world} processes: use a multiple of {world}")
    if trainer.get("sync_batchnorm") and (trainer.get("accelerator") == "cpu" or not torch.cuda.is_available()):
        found.append("`trainer.sync_batchnorm=true` needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); "
                     "on CPUs set it false: BatchNorm then normalises each process's slice of the batch")
    processes = world if world is not None else processes_per_node(trainer) * int(trainer.get("num_nodes", 1) or 1)
    if multirun and processes > 1 and launcher not in PROCESS_LAUNCHERS:
        found.append(f"a sweep (-m) whose jobs each run {processes} processes (trainer=ddp) needs hydra/launcher=slurm "
                     f"(one task per device); with hydra.launcher={launcher or 'basic'} Lightning would start each job's "
                     f"extra processes by re-running the command, which starts the whole sweep again. Run the jobs one "
                     f"by one instead")
    if multirun and launcher in PROCESS_LAUNCHERS and world is None:
        found.append(f"`trainer.devices={trainer.get('devices')}`: hydra/launcher=slurm starts trainer.devices tasks per "
                     f"node, so it must be a number")
    return found


BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fingerprint(module: torch.nn.Module) -> torch.Tensor:
    """Two integers per parameter from its bits (their sum, and their sum weighted by position):
    equal weights give equal fingerprints whatever the reduction order, and any changed bit
    changes them."""
    rows = []
    for p in module.parameters():
        bits = p.detach().contiguous().flatten().view(BITS[p.element_size()]).long()
        rows.append(torch.stack([bits.sum(), (bits * torch.arange(1, len(bits) + 1, device=bits.device)).sum()]))
    return torch.stack(rows)


def replicas_identical(trainer, module: torch.nn.Module) -> bool:
    """Whether every process ends with the same weights (G, D and the EMA), checked by gathering
    their fingerprints, not assumed. (BatchNorm statistics are buffers, which DDP copies from rank
    zero at each forward pass; checkpoints hold rank zero's.)"""
    mine = fingerprint(module)
    gathered = [torch.empty_like(mine) for _ in range(trainer.world_size)]
    torch.distributed.all_gather(gathered, mine)
    return all(torch.equal(g, mine) for g in gathered)
