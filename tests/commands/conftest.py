"""The runs the command tests read: short real trainings, made once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan.training.fit import fit
from tests.helpers import make_cfg, quick


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root) -> dict[str, Path]:
    """Two short runs: the seed MLP (normal noise) and a small DCGAN (uniform noise)."""
    folder = tmp_path_factory.mktemp("runs")
    small_dcgan = ("experiment=dcgan_mnist", "model.generator.width=8", "model.discriminator.width=8")
    for name, overrides in {"mlp": (), "dcgan": small_dcgan}.items():
        fit(make_cfg(*overrides, *quick(), run_dir=folder / name))
    return {"mlp": folder / "mlp", "dcgan": folder / "dcgan"}
