"""Shared helpers: compose the real configs (conf/) the way `python train.py` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import gan.rundir  # noqa: F401  (the ${unique_dir:} resolver)
from gan.train import QUIET_NOTICES

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# CI sets GAN_DATA_DIR (../shared/data); elsewhere MNIST is downloaded into data/ on first use.
DATA_ROOT = os.environ.get("GAN_DATA_DIR", str(ROOT / "data"))


def pytest_configure(config: pytest.Config) -> None:
    for message in QUIET_NOTICES:  # pytest resets warning filters per test; keep train.py's
        config.addinivalue_line("filterwarnings", f"ignore:{message}")


def make_cfg(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    """The composed training config, as train.py would get it (without the hydra node)."""
    extra = [f"run_dir={run_dir}"] if run_dir is not None else ["run_dir=/nonexistent"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"data.root={DATA_ROOT}", *extra, *overrides])


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, from `cwd` (so outputs/ lands there)."""
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    env.pop("HYDRA_FULL_ERROR", None)  # errors as users see them
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def quick(*overrides: str) -> list[str]:
    """Overrides for a few-second CPU run with every part switched on."""
    return ["trainer=cpu", "eval_every=0", "trainer.max_steps=12", "trainer.log_every_n_steps=3", "sample_every=5",
            "callbacks.checkpoint.every_n_train_steps=6", "callbacks.progress_bar.refresh_rate=0", *overrides]


@pytest.fixture(scope="session")
def mnist_root() -> str:
    from gan.data import MNISTDataModule

    MNISTDataModule(root=DATA_ROOT).prepare_data()  # downloads when online and missing; clear error when not
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist_classifier(mnist_root, tmp_path_factory):
    """The MNIST feature classifier, trained once per test session (about 1.5 minutes on 2 CPU
    cores) into a fresh cache that every later use in this session, subprocesses too, reads."""
    from gan.data import MNISTDataModule
    from gan.metrics.extractor import classifier_for

    os.environ["GAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("classifier-cache"))
    return classifier_for(MNISTDataModule(root=mnist_root))
