"""Run folders are claimed atomically: two runs never share one, even when both find it empty."""

from __future__ import annotations

from omegaconf import OmegaConf

from gan.run_folders import RunDirGuard


def run_config(folder) -> OmegaConf:
    return OmegaConf.create({"hydra": {"run": {"dir": str(folder)}, "overrides": {"hydra": []}}})


def test_two_runs_that_find_the_same_folder_empty_get_one_each(tmp_path):
    (tmp_path / "same").mkdir()  # both runs look before either has written anything
    first, second = run_config(tmp_path / "same"), run_config(tmp_path / "same")
    RunDirGuard().on_run_start(first)
    RunDirGuard().on_run_start(second)
    assert first.hydra.run.dir == str(tmp_path / "same")
    assert second.hydra.run.dir == str(tmp_path / "same_1")
    assert second.hydra.overrides.hydra == [f"hydra.run.dir={tmp_path / 'same_1'}"]


def test_a_folder_holding_files_is_left_alone(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    config = run_config(tmp_path / "taken")
    RunDirGuard().on_run_start(config)
    assert config.hydra.run.dir == str(tmp_path / "taken_1")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
