"""Sweeps heal: a sweep killed with SIGKILL leaves its running trial RUNNING in the study and its job
`running` in status.json; the next invocation of the same command resolves it (gan/sweeps/healing.py),
and retries it when asked to. The kill is a real one, of a real sweep process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from gan.processes import identity
from gan.report import report
from gan.run.names import job_number
from gan.run.status import read_status, write_status
from gan.sweeps.heartbeats import retried_from
from tests.helpers import DATA_ROOT, ROOT, run_cli

TINY = ("trainer=cpu", "trainer.max_steps=4", "trainer.log_every_n_steps=2", "sample_every=2", "eval_every=0",
        "optimized_metric=loss/g", "callbacks.progress_bar.refresh_rate=0")
COMMAND = ("hparams_search=optuna_quick", "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner=none", *TINY)
LONG = "trainer.max_steps=100000"  # the killed invocation's trial: still training whenever the kill comes
STUDY = Path("outputs") / "optuna" / "optuna_quick"


def load(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="optuna_quick", storage=f"sqlite:///{sweep / 'optuna.db'}")


def job(sweep: Path, number: int) -> Path:
    """The sweep's job folder of that number (`1_loss-hinge`: named by what it changed)."""
    return next(p for p in sweep.iterdir() if job_number(p) == number)


def wait_until_running(sweep: Path, process: subprocess.Popen, limit_s: float = 300) -> None:
    """Until a job of the sweep has written `running` (its trial was asked and recorded before)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before its job was killed"
        for path in sweep.glob("*/status.json"):
            if json.loads(path.read_text()).get("status") == "running":
                return
        time.sleep(0.1)
    raise AssertionError(f"no job of {sweep} said `running` within {limit_s} s")


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory, mnist_root) -> Path:
    """A folder where `python train.py -m hparams_search=optuna_quick ...` was killed with SIGKILL
    (its whole process group, as a lost terminal or an OOM killer would) while its trial trained.
    Made once; each test continues a copy of it."""
    where = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    with open(where / "sweep.log", "w") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *COMMAND, LONG], cwd=where, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_running(where / STUDY, process)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    [trial] = load(where / STUDY).trials
    assert trial.state == TrialState.RUNNING and read_status(job(where / STUDY, 0))["status"] == "running"  # the user's report
    return where


def continued(killed: Path, tmp_path: Path, *extra: str) -> tuple[Path, subprocess.CompletedProcess]:
    """The same command run again, in a copy of the killed sweep's folder, with short trials."""
    shutil.copytree(killed / "outputs", tmp_path / "outputs")
    result = run_cli(*COMMAND, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / STUDY, result


@pytest.mark.slow
def test_a_killed_sweeps_running_trial_is_failed_and_its_job_interrupted_when_the_command_runs_again(killed_sweep,
                                                                                                 tmp_path):
    killed_process = read_status(job(killed_sweep / STUDY, 0))["process"]
    sweep, result = continued(killed_sweep, tmp_path)
    trials = load(sweep).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # healed, then this invocation's trial
    status = read_status(job(sweep, 0))
    assert status["status"] == "interrupted" and "is gone (found when the sweep started again)" in status["error"]
    assert status["process"] == killed_process and status["started"] > 0  # the job's own record, kept
    assert read_status(job(sweep, 1))["status"] == "completed"
    assert "Trial 0 was left RUNNING" in result.stdout and "now FAIL" in result.stdout  # Hydra logs to stdout
    assert retried_from(trials[1]) is None  # no retries unless asked for
    notes = (report(str(sweep)) / "notes.txt").read_text()
    assert "2 trials, 1 complete, 1 fail." in notes  # not "1 running"


@pytest.mark.slow
def test_with_retries_the_healed_trials_params_run_again_first(killed_sweep, tmp_path):
    sweep, _ = continued(killed_sweep, tmp_path, "hydra.sweeper.retries=1")
    killed, again = load(sweep).trials
    assert killed.state == TrialState.FAIL and again.state == TrialState.COMPLETE
    assert again.params == killed.params and again.system_attrs["retry_history"] == [0] and retried_from(again) == 0
    assert killed.user_attrs["status"] == "interrupted" and killed.user_attrs["run_folder"] == str(job(sweep, 0))  # as healed
    assert read_status(job(sweep, 1))["status"] == "completed"
    overrides = OmegaConf.load(job(sweep, 1) / ".hydra" / "overrides.yaml")
    assert f"loss={killed.params['loss']}" in overrides  # the job ran the killed trial's point


def dead_process() -> dict:
    """The identity of a process that has ended (taken while it ran, so a reused PID is told apart)."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    who = identity(process.pid)
    process.communicate()
    return who


def running_trial(study: optuna.Study, sweep: Path, sweeper: dict, job: dict | None) -> optuna.Trial:
    """A trial asked by `sweeper`, whose job folder holds the status.json `job` (None: no folder),
    started (and, unless running, ended) after the trial began, as a job's would be."""
    from gan.sweeps.healing import SWEEPER

    trial = study.ask({"x": FloatDistribution(0, 1)})
    study._storage.set_trial_system_attr(trial._trial_id, SWEEPER, sweeper)
    if job is not None:
        folder = sweep / str(trial.number)
        (folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"hydra": [f"hydra.sweeper.trial={trial._trial_id}"]}}}),
                       folder / ".hydra" / "hydra.yaml")
        times = {"started": time.time(), **({"ended": time.time()} if job["status"] != "running" else {})}
        write_status(folder, **times, **job)
    return trial


def test_only_trials_whose_processes_are_gone_are_resolved_and_a_finished_job_is_told_as_it_finished(tmp_path, caplog):
    """The sweeper that died after its job had written `completed` never told the study: the value is
    in status.json. Processes on another machine cannot be asked, and a live one may still tell."""
    from gan.sweeps.healing import heal

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    dead, elsewhere = dead_process(), {"host": "another-machine", "pid": os.getpid(), "pid_started": 1}
    finished = running_trial(study, tmp_path, dead, {"status": "completed", "objective": 0.25, "process": dead})
    remote = running_trial(study, tmp_path, elsewhere, {"status": "running", "process": elsewhere})
    live = running_trial(study, tmp_path, identity(), {"status": "running"})  # write_status names this process
    with caplog.at_level(logging.INFO, logger="gan.sweeps.healing"):
        heal(study, tmp_path)
    trials = {t.number: t for t in study.trials}
    assert trials[finished.number].state == TrialState.COMPLETE and trials[finished.number].value == 0.25
    assert trials[remote.number].state == TrialState.RUNNING and trials[live.number].state == TrialState.RUNNING
    assert read_status(tmp_path / str(remote.number))["status"] == "running"  # nothing rewritten where it may run
    assert any(f"Trial {remote.number}" in r.message and "another machine" in r.message for r in caplog.records)


def test_a_trial_without_a_job_folder_fails_and_a_retry_is_not_retried_beyond_retries(tmp_path):
    """The sweeper died before the job made its folder; a chain of retries ends at `retries`."""
    from gan.sweeps.healing import heal

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    first = running_trial(study, tmp_path, dead_process(), None)
    heal(study, tmp_path, retries=1)
    retried = study.ask({"x": FloatDistribution(0, 1)})  # the enqueued retry comes first
    assert retried.params == study.trials[first.number].params and study.trials[first.number].state == TrialState.FAIL
    study._storage.set_trial_system_attr(retried._trial_id, "gan:sweeper", dead_process())
    heal(study, tmp_path, retries=1)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]  # the second failure is not enqueued
    assert study.trials[1].system_attrs["retry_history"] == [0] and study.trials[1].user_attrs == {
        "run_folder": None, "status": "no status.json"}


def test_a_damaged_status_json_is_a_failed_trial_not_a_crashed_sweep(tmp_path):
    from hydra_plugins.gan_optuna_sweeper.sweeper import job_state

    (tmp_path / "status.json").write_text('{"status": "comp')  # cut off mid-write by an older version
    ret = JobReturn(hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}}))
    state, values, what, _ = job_state(ret)
    assert state == TrialState.FAIL and values is None and "status.json: unreadable" in what


def test_a_study_database_that_cannot_be_read_is_one_paragraph_naming_it(tmp_path):
    """A truncated or overwritten optuna.db: the same command run again says which file and what
    to do, before any job starts (it was SQLAlchemy's traceback)."""
    (tmp_path / STUDY).mkdir(parents=True)
    (tmp_path / STUDY / "optuna.db").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    done = run_cli(*COMMAND, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "the study's database cannot be read" in done.stderr and "optuna.db" in done.stderr
    assert not [p for p in (tmp_path / STUDY).iterdir() if p.is_dir()]  # no job started
