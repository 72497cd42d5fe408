"""Hydra's own files of a job (.hydra/config.yaml, hydra.yaml, overrides.yaml) go through the
project's one writer, so a kill or a full disk never leaves half of one for gan.report or a resume."""

from __future__ import annotations

import errno
import os

import hydra.core.utils as hydra_utils
import pytest
from omegaconf import OmegaConf

from gan.config.hydra_runtime import whole_hydra_files
from gan.files import WriteFailed


def test_hydra_writes_a_jobs_config_whole_or_leaves_the_old_one(tmp_path, monkeypatch):
    monkeypatch.setattr(hydra_utils, "_save_config", hydra_utils._save_config)  # undone after the test
    whole_hydra_files()
    hydra_utils._save_config(OmegaConf.create({"seed": 1}), "config.yaml", tmp_path)
    assert OmegaConf.load(tmp_path / "config.yaml").seed == 1

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed):
        hydra_utils._save_config(OmegaConf.create({"seed": 2}), "config.yaml", tmp_path)
    assert OmegaConf.load(tmp_path / "config.yaml").seed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
