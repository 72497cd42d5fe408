"""The sweeper's config node (`hydra.sweeper`), registered as `hydra/sweeper: optuna`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.gan_optuna_sweeper.sweeper.OptunaSweeper"
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})  # an optuna.samplers class
    pruner: Any = None  # median | successive_halving | hyperband | none, or a node with an optuna.pruners _target_
    direction: Any = "minimize"  # minimize | maximize, or a list of them (one per optimized_metric: multi-objective)
    storage: Optional[str] = None  # sqlite:///<file> | a database server's SQLAlchemy URL | journal:///<file>
    study_name: Optional[str] = None  # the study in the storage; the same name continues it
    n_trials: int = 20  # trials each invocation adds (workers >= 1: the trials the study holds when it is done)
    n_jobs: int = 1  # trials asked for (and launched) at a time, as one batch (workers=0)
    workers: int = 0  # 0: batches of n_jobs; N: N sweeper processes here, each asking, running and telling its own trials
    helper: bool = False  # set on the processes workers=N starts beside the first: they run trials and start no others
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    heartbeat_grace: int = 120  # a RUNNING trial without a heartbeat for this long is dead: FAIL (or what its folder says)
    max_failure_rate: float = 1.0  # stop the sweep when a batch fails more often than this
    retries: int = 0  # times a trial whose processes died (a killed sweep, a lost node) is run again, from its last checkpoint
    params: Optional[dict[str, str]] = None  # the search space, in Hydra's sweep syntax
    trial: Optional[int] = None  # set by the sweeper for each job: the Optuna trial id it reports to


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="gan")
