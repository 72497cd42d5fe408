"""The project's Hydra sweeper on current Optuna (`hydra/sweeper: optuna`, as the `hparams_search`
configs select it): Hydra's Optuna sweeper's search-space syntax and keys, on Optuna >= 4 and
SQLAlchemy 2, with pruning. Hydra finds it in the `hydra_plugins` namespace package."""

from hydra_plugins.gan_optuna_sweeper.config import OptunaSweeperConf  # noqa: F401  (registers the config)
