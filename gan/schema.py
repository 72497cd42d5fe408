"""The schema every composed config is checked against before anything is built.

Hydra already refuses unknown command-line keys and unknown group options; this catches
values of the wrong type or range (`model.latent_dim=abc`, `data.batch_size=0`,
`trainer.accelerator=tpu9`) and keys added with `+`, and turns them into one short message.
Nodes that pass keyword arguments straight to a library class (optimizers, loggers, callbacks,
the Trainer) check the keys this project relies on and let the class check the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gan.data import SAMPLINGS
from gan.errors import UserError
from gan.module import D_UPDATES, FAKES_MODES
from gan.networks import CONDITIONINGS, INITS, NOISES

PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Open(BaseModel):
    """kwargs for a library class: known keys typed, the rest passed through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    target: str = Field(alias="_target_")


class Data(Closed):
    target: str = Field(alias="_target_")
    root: str
    batch_size: PosInt
    image_shape: tuple[PosInt, PosInt, PosInt]
    num_classes: Annotated[int, Field(strict=True, ge=2)]
    sampling: Literal[SAMPLINGS]
    download: bool
    seed: NonNegInt


class Network(Open):
    hidden_dims: Annotated[list[PosInt], Field(min_length=1)] | None = None
    width: PosInt | None = None
    latent_dim: PosInt | None = None
    negative_slope: NonNegFloat | None = None
    batch_norm: bool | None = None
    bn_momentum: Annotated[float, Field(ge=0, le=1)] | None = None
    bn_eps: PosFloat | None = None
    init: Literal[INITS] | None = None


class Model(Closed):
    latent_dim: PosInt
    noise: Literal[NOISES]
    negative_slope: NonNegFloat
    init: Literal[INITS]
    conditional: bool
    label_dim: PosInt
    conditioning: Literal[CONDITIONINGS]
    spectral_norm: bool
    generator: Network
    discriminator: Network


class OptimizerValues(BaseModel):
    """Optimizer arguments this project sets: shared at the top of conf/optimizer/<name>.yaml
    and per network below it."""

    lr: PosFloat
    beta1: Beta | None = None
    beta2: Beta | None = None
    betas: tuple[Beta, Beta] | None = None
    eps: PosFloat | None = None
    weight_decay: NonNegFloat | None = None
    momentum: NonNegFloat | None = None
    alpha: NonNegFloat | None = None
    fused: bool | None = None


class OptimizerArgs(Open, OptimizerValues):
    partial: bool = Field(alias="_partial_")


class Optimizer(Closed, OptimizerValues):
    generator: OptimizerArgs
    discriminator: OptimizerArgs


class Trainer(Open):
    accelerator: Literal["cpu", "gpu", "cuda", "mps", "auto"]
    devices: Literal[1]  # one device: the update, the batch draws and the logging are not made for several yet
    precision: Literal["64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
    max_steps: PosInt
    log_every_n_steps: PosInt


class Loss(Closed):
    target: str = Field(alias="_target_")
    real_label: Annotated[float, Field(gt=0, le=1)] | None = None
    gradient_penalty: NonNegFloat
    r1_gamma: NonNegFloat


class Gan(Closed):
    n_critic: PosInt
    d_update: Literal[D_UPDATES]
    fakes_mode: Literal[FAKES_MODES]
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None


class SampleGridArgs(Open):
    every_n_steps: PosInt
    nrow: PosInt


class MetricsArgs(Closed):
    n: Annotated[int, Field(strict=True, ge=2)]
    k: PosInt
    seed: NonNegInt
    features: Literal["classifier", "inception"]
    inception_weights: str | None


class CheckpointArgs(Open):
    every_n_train_steps: NonNegInt | None = None  # 0: never on a step interval


class HealthArgs(Open):
    action: Literal["warn", "stop"]
    window: PosInt
    d_real_above: Annotated[float, Field(ge=0, le=1)]
    d_fake_below: Annotated[float, Field(ge=0, le=1)]
    min_modes: NonNegInt


class Callbacks(BaseModel):
    """callbacks.<name>: known callbacks checked key by key, any other one as a `_target_` node."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Open]
    samples: SampleGridArgs | None = None
    checkpoint: CheckpointArgs | None = None
    last: CheckpointArgs | None = None
    best: CheckpointArgs | None = None
    health: HealthArgs | None = None


class TrainConfig(Closed):
    seed: NonNegInt
    ckpt_path: str | None
    sample_every: PosInt
    eval_every: NonNegInt
    optimized_metric: str | None
    failed_objective: float
    threads: PosInt | Literal["auto"]
    metrics: MetricsArgs
    run_dir: str
    data: Data
    model: Model
    loss: Loss
    gan: Gan
    optimizer: Optimizer
    trainer: Trainer
    logger: dict[str, Open]
    callbacks: Callbacks


def _interpolation(cfg: DictConfig, loc: tuple) -> str:
    """' (from ${model.latent_dim})' when the bad value came through an interpolation."""
    node = cfg
    for part in loc:
        if not OmegaConf.is_config(node):
            break
        if OmegaConf.is_interpolation(node, part):
            return f" (from {OmegaConf.to_container(node, resolve=False)[part]})"
        node = node[part]
    return ""


def _describe(error: dict[str, Any], cfg: DictConfig) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"`{key}` is not a known key (check its spelling; conf/ lists the keys of each group)"
    if error["type"] == "missing":
        return f"`{key}` is missing"
    source = _interpolation(cfg, error["loc"])
    return f"`{key}={error['input']!r}`{source}: {error['msg'][0].lower()}{error['msg'][1:]}"


def validate(cfg: DictConfig, schema: type[BaseModel] = TrainConfig) -> None:
    """Raise UserError naming every bad key and what it allows."""
    try:
        schema.model_validate(OmegaConf.to_container(cfg, resolve=True))
    except ValidationError as exc:
        problems = "; ".join(_describe(error, cfg) for error in exc.errors())
        raise UserError(f"Invalid config: {problems}. Fix the value on the command line or in conf/.") from None
