"""Fixtures and pytest settings; the helpers the tests import are in tests/helpers.py."""

from __future__ import annotations

import os

os.environ.setdefault("MKL_CBWR", "AUTO")  # as train.py sets it, before torch loads MKL

import pytest

from gan.training.fit import QUIET_NOTICES
from tests.helpers import DATA_ROOT


def pytest_configure(config: pytest.Config) -> None:
    for message in QUIET_NOTICES:  # pytest resets warning filters per test; keep train.py's
        config.addinivalue_line("filterwarnings", f"ignore:{message}")


@pytest.fixture(scope="session")
def mnist_root() -> str:
    from gan.data import MNISTDataModule

    MNISTDataModule(root=DATA_ROOT).prepare_data()  # downloads when online and missing; clear error when not
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist_classifier(mnist_root, tmp_path_factory):
    """The MNIST feature classifier, trained once per test session into a fresh cache that every
    later use in this session, subprocesses too, reads. GAN_TEST_CACHE_DIR names that cache
    instead, so that CI's two sessions (quick, then slow) train it once."""
    from gan.data import MNISTDataModule
    from gan.metrics.extractor import classifier_for

    os.environ["GAN_CACHE_DIR"] = os.environ.get("GAN_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("classifier-cache"))
    return classifier_for(MNISTDataModule(root=mnist_root))
