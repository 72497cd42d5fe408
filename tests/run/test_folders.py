"""Run folders are claimed atomically: two runs never share one, even when both find it empty."""

from __future__ import annotations

from omegaconf import OmegaConf

from gan.run.folders import RunDirGuard


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


def test_a_requeued_slurm_job_keeps_its_own_folder_and_no_other(tmp_path, monkeypatch):
    from gan.run.folders import free_job_dir
    from gan.run.status import write_status

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    for folder, job in ((tmp_path / "run", "77"), (tmp_path / "sweep" / "3", "77_3")):
        folder.mkdir(parents=True)
        write_status(folder, status="interrupted", slurm_job=job)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    config = run_config(tmp_path / "run")
    RunDirGuard().on_run_start(config)
    assert config.hydra.run.dir == str(tmp_path / "run")  # its own earlier run: continue there
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert free_job_dir(str(tmp_path / "sweep"), 3) == "3"  # a requeued trial of a study, likewise
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another job's folder is left alone
    assert free_job_dir(str(tmp_path / "sweep"), 3) == "4"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # not requeued: a fresh folder, as for any run
    config = run_config(tmp_path / "run")
    RunDirGuard().on_run_start(config)
    assert config.hydra.run.dir == str(tmp_path / "run_1")
