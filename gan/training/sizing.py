"""What a run will hold, checked before its networks are built: both networks are first made on
the meta device (shapes, no memory), so a batch that BatchNorm cannot normalise, or a model
whose weights, gradients and optimizer state would not fit in the memory this process may take,
is refused in one paragraph instead of failing mid-training or swapping the machine to a halt.
The estimate is a floor (activations come on top of it), so what it refuses cannot run."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from gan.config.building import build
from gan.data.memory import available_memory
from gan.engine.distributed import processes_per_node, world_size
from gan.errors import UserError

# Tensors an optimizer keeps per parameter (its moments), by class name; others are taken as Adam's two.
OPTIMIZER_STATES = {"SGD": 1, "RMSprop": 1, "Adagrad": 1, "Adadelta": 2, "Adam": 2, "AdamW": 2, "NAdam": 2,
                    "RAdam": 2, "Adamax": 2}


LIMITS = " (the least of what the machine has free, its cgroup allows and `ulimit` permits)"


def numel(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def states(cfg: DictConfig, net: str) -> int:
    name = str(cfg.optimizer.get("_target_", "")).rsplit(".", 1)[-1]
    momentum = cfg.optimizer.get(net, {}).get("momentum", cfg.optimizer.get("momentum", 0))
    return 0 if name == "SGD" and not momentum else OPTIMIZER_STATES.get(name, 2)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_before_building(cfg: DictConfig) -> None:
    """Refuse what cannot train, from the config and the data's sizes (after `prepare_data`)."""
    with torch.device("meta"):
        generator, discriminator = build(cfg, "model.generator"), build(cfg, "model.discriminator")
    world = world_size(cfg.trainer) or 1
    per_process = cfg.data.batch_size // world
    if per_process < 2 and (has_batchnorm(generator) or has_batchnorm(discriminator)):
        which = " and ".join(n for n, net in (("G", generator), ("D", discriminator)) if has_batchnorm(net))
        each = f"each of the run's {world} processes" if world > 1 else "the run"
        raise UserError(f"data.batch_size={cfg.data.batch_size} gives {each} a batch of {per_process}, and BatchNorm "
                        f"(in {which}: {type(generator).__name__}, {type(discriminator).__name__}) needs at least 2 "
                        f"images per batch to normalise over. Raise data.batch_size, or turn BatchNorm off "
                        f"(model.generator.batch_norm=false, model.discriminator.batch_norm=false).")
    g, d = numel(generator), numel(discriminator)
    ema = cfg.gan.get("ema_decay") is not None or cfg.gan.get("ema_kimg") is not None
    optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1]
    # float32 (mixed precision keeps float32 weights too): weights, gradients, moments, G's average
    training = (f"weights, gradients and {optimizer} state",
                4 * (g * (2 + states(cfg, "generator") + ema) + d * (2 + states(cfg, "discriminator"))))
    built = ("weights", 4 * (g * (1 + ema) + d))  # what is made on the CPU before it moves to a GPU
    gpu = gpu_free(cfg)
    if gpu is None and (processes := processes_per_node(cfg.trainer)) > 1:  # each process of this machine holds it all
        training = (f"{training[0]} in each of the {processes} processes on this machine", training[1] * processes)
    limits = [("this process", available_memory(), training if gpu is None else built, LIMITS), ("the GPU", gpu, training, "")]
    for place, free, (what, need), why in limits:
        if free is not None and need > free:
            raise UserError(f"The model is too large for {place}: G has {g / 1e6:,.1f} M parameters and D {d / 1e6:,.1f} "
                            f"M, whose {what} take at least {gib(need)}, more than the {gib(free)} {place} may still "
                            f"take{why}. Shrink the model (model.latent_dim, the widths), or run where there is more memory.")


def gpu_free(cfg: DictConfig) -> int | None:
    """Free memory of the GPU this run trains on; None when it trains on the CPU."""
    if str(cfg.trainer.get("accelerator", "auto")) not in ("gpu", "cuda", "auto") or not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info()[0]
