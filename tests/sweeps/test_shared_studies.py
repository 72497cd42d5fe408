"""Several sweepers on one study: the storages (SQLite, a real PostgreSQL server, Optuna's journal),
the lock they take turns with, heartbeats that fail and retry the trials of dead processes, and
every storage that cannot work refused before a trial runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from gan.errors import UserError
from gan.report import report as make_report
from gan.run.status import write_status
from gan.sweeps import storages
from gan.sweeps.heartbeats import HEARTBEAT, fail_stale, retried_from
from gan.sweeps.studies import counted_trials, same_search_space
from tests.helpers import DATA_ROOT, ROOT, PostgresServer, events, run_cli
from tests.sweeps.test_sweeps import TINY, grid_search

pytestmark = pytest.mark.usefixtures("mnist_root")
SPACE = {"x": FloatDistribution(0, 1), "k": CategoricalDistribution(["a", "b"])}


def count_under_lock(url: str, counter: str, rounds: int) -> None:
    for _ in range(rounds):
        with storages.study_lock(url, "s"):
            value = int(Path(counter).read_text())
            time.sleep(0.002)  # widen the window a missing lock would lose an update in
            Path(counter).write_text(str(value + 1))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_sweepers_take_turns_under_the_study_lock(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'optuna.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'study.log'}"
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=count_under_lock, args=(url, str(counter), 40)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0] and counter.read_text() == "120"  # no update lost


def test_a_dead_trials_heartbeat_fails_it_and_a_retry_takes_its_params_and_folder(tmp_path):
    url = f"journal://{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="s", storage=storages.open_storage(url))
    dead, alive, done = (study.ask(SPACE) for _ in range(3))
    lost = tmp_path / "1_x"
    lost.mkdir()
    write_status(lost, status="running", started=time.time())  # its job died mid-run
    study._storage.set_trial_user_attr(dead._trial_id, "run_folder", str(lost))
    folder = tmp_path / "3_x"
    folder.mkdir()
    write_status(folder, status="completed", objective=0.25, ended=time.time())  # its job finished, its sweeper died
    study._storage.set_trial_user_attr(done._trial_id, "run_folder", str(folder))
    for trial, age in ((dead, 500), (alive, 1), (done, 500)):
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time() - age)
    assert fail_stale(study, grace=60, retries=1) == [dead.number, done.number]
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE]
    assert trials[2].value == 0.25  # as its status.json says
    assert json.loads((lost / "status.json").read_text())["status"] == "interrupted"  # no longer says running
    assert trials[0].user_attrs["status"] == "interrupted" and trials[0].user_attrs["run_folder"] == str(lost)
    [retry] = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == trials[0].params and retried_from(retry) == dead.number
    assert counted_trials(study) == 3  # the retry stands in for the failed trial
    again = study.ask(SPACE)  # the next ask takes the retry
    assert again.number == retry.number and again.params == trials[0].params
    study._storage.set_trial_system_attr(again._trial_id, HEARTBEAT, time.time() - 500)
    assert fail_stale(study, grace=60, retries=1) == [again.number]
    assert not study.get_trials(states=(TrialState.WAITING,))  # retried once, not twice
    assert counted_trials(study) == 3  # the failed retry now counts in its trial's place


def test_a_study_is_searched_over_one_space(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    same_search_space(study, SPACE, "sqlite:///x")
    same_search_space(study, dict(SPACE), "sqlite:///x")  # the same space again: fine
    other = {"x": FloatDistribution(0, 2), "k": SPACE["k"], "y": CategoricalDistribution([1, 2])}
    with pytest.raises(UserError, match=r"study_name=s in sqlite:///x was searched over another space: x, y differ"):
        same_search_space(study, other, "sqlite:///x")


def test_storages_that_cannot_work_are_one_paragraph(tmp_path):
    with pytest.raises(UserError, match="not a storage URL. Give sqlite:///<file>"):
        storages.check("not a url at all")
    with pytest.raises(UserError, match=r"the mysql\+mysqldb driver is not installed"):
        storages.check("mysql+mysqldb://u:secret@127.0.0.1/db")
    with pytest.raises(UserError, match=r"postgresql\+psycopg2://gan@127.0.0.1:1/x: the database does not answer"):
        storages.check("postgresql+psycopg2://gan@127.0.0.1:1/x")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="the folder .*a_file does not exist"):
        storages.check(f"journal://{tmp_path / 'a_file' / 'study.log'}")
    assert storages.shown("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"
    storages.check(f"journal://{tmp_path / 'study.log'}")
    storages.check(f"sqlite:///{tmp_path / 'deeper' / 'optuna.db'}")  # its folder is made
    assert (tmp_path / "deeper").is_dir()


def test_an_unreachable_database_and_another_search_space_are_refused_before_any_trial(tmp_path):
    command = ("hparams_search=optuna_quick", "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner=none", *TINY)
    result = run_cli(*command, "hydra.sweeper.storage=postgresql+psycopg2://gan@127.0.0.1:1/x", cwd=tmp_path)
    assert result.returncode == 1 and "the database does not answer" in result.stderr
    assert not list(tmp_path.glob("outputs/optuna/optuna_quick/*/"))  # no job ran
    assert run_cli(*command, cwd=tmp_path).returncode == 0
    other = run_cli(*command, "model.latent_dim=choice(8,16)", cwd=tmp_path)
    assert other.returncode == 1 and "was searched over another space: model.latent_dim differ" in other.stderr
    study = optuna.load_study(study_name="optuna_quick", storage=f"sqlite:///{tmp_path}/outputs/optuna/optuna_quick/optuna.db")
    assert len(study.trials) == 1


def test_a_report_from_a_storage_url_finds_its_folder_or_says_why_not(tmp_path):
    url = f"journal://{tmp_path / 'studies.log'}"
    with pytest.raises(UserError, match=r"studies.log does not exist; give the storage the sweep used"):
        make_report(url)
    storage = storages.open_storage(url)
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=storage).ask()
    with pytest.raises(UserError, match=r"the storage holds 2 studies \(a, b\); name one with study=<name>"):
        make_report(url)
    with pytest.raises(UserError, match=r"study=c: no such study in .*; it holds a, b"):
        make_report(url, study="c")
    with pytest.raises(UserError, match=r"study a's job folders are not one folder on this machine \(recorded: none"):
        make_report(url, study="a")
    [trial] = optuna.load_study(study_name="b", storage=storage).trials
    storage.set_trial_user_attr(trial._trial_id, "run_folder", "/elsewhere/sweep/0_lr-1")
    with pytest.raises(UserError, match=r"\(recorded: /elsewhere/sweep\); run gan.report where they are"):
        make_report(url, study="b")
    job = tmp_path / "sweep" / "0_k-a"
    write_status(job, status="completed")
    storage.set_trial_user_attr(trial._trial_id, "run_folder", str(job))
    out = make_report(url, study="b")  # the named study of the two, found in the folder its trial named
    assert out == tmp_path / "sweep" / "report" and "Optuna study b: 1 trials" in (out / "notes.txt").read_text()


def sweeper(cwd: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def shared(study_name: str, storage: str, n_trials: int, *more: str) -> tuple[str, ...]:
    return ("hparams_search=optuna_quick", f"hydra.sweeper.study_name={study_name}", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.workers=1", "hydra.sweeper.pruner=none", *TINY, *more)


def check_study(study: optuna.Study, sweep: Path, n: int) -> None:
    trials = study.get_trials()
    assert len(trials) == n, [t.state for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials)  # none RUNNING, none lost
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == n  # no point twice
    folders = [t.user_attrs["run_folder"] for t in trials]
    assert len(set(folders)) == n and all(Path(f).parent == sweep.resolve() for f in folders)
    assert sorted(int(Path(f).name.split("_")[0]) for f in folders) == list(range(n))  # folder number = trial number


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.mark.slow
def test_three_sweepers_on_postgresql_run_exactly_n_trials_between_them(tmp_path, postgres):
    processes = [sweeper(tmp_path, *shared("pg12", postgres.url, 12)) for _ in range(3)]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs[0][-3000:]
    study = optuna.load_study(study_name="pg12", storage=postgres.url)
    check_study(study, tmp_path / "outputs" / "optuna" / "pg12", 12)
    for trial in study.trials:  # each folder ran the trial that names it
        hydra = (Path(trial.user_attrs["run_folder"]) / ".hydra" / "hydra.yaml").read_text()
        assert f"hydra.sweeper.trial={trial._trial_id}" in hydra
    report = subprocess.run([sys.executable, "-m", "gan.report", f"sweep={tmp_path / 'outputs/optuna/pg12'}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0 and "Optuna study pg12: 12 trials, 12 complete" in report.stdout  # read from the server
    by_url = subprocess.run([sys.executable, "-m", "gan.report", f"sweep={postgres.url}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # the study's URL instead of its folder
    assert by_url.returncode == 0 and by_url.stdout == report.stdout


@pytest.mark.slow
def test_workers_on_a_journal_share_one_study_and_the_grid_runs_each_point_once(tmp_path):
    journal = f"journal://{tmp_path / 'studies' / 'q.log'}"
    (tmp_path / "studies").mkdir()
    result = run_cli(*shared("q", journal, 9), "hydra.sweeper.workers=3", cwd=tmp_path)  # one command, three processes
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "q"
    check_study(optuna.load_study(study_name="q", storage=storages.open_storage(journal)), sweep, 9)
    assert len(list(sweep.glob("worker_*.log"))) == 2
    listed = subprocess.run([sys.executable, "-m", "gan.report", f"sweep={journal}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # the journal's URL finds the sweep's folder
    assert listed.returncode == 0 and f"Report written to {sweep.resolve()}/report/" in listed.stdout, listed.stderr
    assert "Optuna study q: 9 trials, 9 complete" in listed.stdout
    conf = grid_search(tmp_path / "conf", {"loss": "choice(nonsaturating, hinge, minimax)", "model.latent_dim": "choice(8,16)"})
    grid = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, "hydra.sweeper.workers=3", cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr[-3000:]
    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{tmp_path}/outputs/optuna/grid/optuna.db")
    points = sorted((t.params["loss"], t.params["model.latent_dim"]) for t in study.trials)
    assert len(points) == 6 and len(set(points)) == 6  # each of the 6 points once, across three processes


@pytest.mark.slow
def test_a_killed_sweepers_trial_fails_on_its_heartbeat_and_its_retry_resumes_from_its_checkpoint(tmp_path, postgres):
    long = ("trainer.max_steps=400", "callbacks.last.every_n_train_steps=50", "trainer.log_every_n_steps=10",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.heartbeat_grace=6", "hydra.sweeper.retries=1")
    both = [sweeper(tmp_path, *shared("kill", postgres.url, 2, *long)) for _ in range(2)]
    sweep = tmp_path / "outputs" / "optuna" / "kill"
    deadline = time.monotonic() + 300
    while len(list(sweep.glob("*/checkpoints/last.ckpt"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # both trials running (healing, at each sweeper's start, is behind them)
    victim = sorted(p.parent.parent for p in sweep.glob("*/checkpoints/last.ckpt"))[0]
    pid = json.loads((victim / "status.json").read_text())["process"]["pid"]
    [killed] = [p for p in both if p.pid == pid]  # its sweeper: the basic launcher runs the job in-process
    [other] = [p for p in both if p.pid != pid]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    out = other.communicate(timeout=900)[0]
    assert other.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="kill", storage=postgres.url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 2 and len(states) == 3
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.user_attrs["run_folder"] == str(victim.resolve())
    assert json.loads((victim / "status.json").read_text())["status"] == "interrupted"
    [retry] = [t for t in study.trials if retried_from(t) == failed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert f"Trial {failed.number}: no heartbeat for" in out, out[-3000:]
    assert f"Trial {retry.number} retries trial {failed.number}: it resumes from {victim.resolve()}" in out
    resumed = Path(retry.user_attrs["run_folder"])
    assert f"ckpt_path={victim.resolve()}" in (resumed / ".hydra" / "overrides.yaml").read_text()
    steps = [e.step for e in events(resumed).Scalars("loss/g")]
    assert steps[0] > 50 and steps[-1] == 400  # it went on from the dead trial's checkpoint, not from iteration 0


@pytest.mark.slow
def test_a_database_that_goes_away_mid_sweep_costs_no_trial_and_the_sweeper_says_what_it_did_not_tell(tmp_path):
    server = PostgresServer()
    try:
        job = sweeper(tmp_path, *shared("gone", server.url, 1, "trainer.max_steps=300", "trainer.log_every_n_steps=10"))
        sweep = tmp_path / "outputs" / "optuna" / "gone"
        deadline = time.monotonic() + 300
        while not list(sweep.glob("*/events.out.tfevents*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        server.stop()  # mid-trial
        out = job.communicate(timeout=600)[0]
    finally:
        server.stop()
    assert job.returncode == 1, out[-3000:]
    [status] = sweep.glob("*/status.json")
    assert json.loads(status.read_text())["status"] == "completed"  # the trial finished and kept its result
    assert "stopped answering" in out and "did not take the end of 1 trials: trial 0 COMPLETE" in out, out[-5000:]
    report = subprocess.run([sys.executable, "-m", "gan.report", f"sweep={sweep}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0 and "completed" in report.stdout  # the folders still show it
    assert "could not be read" in report.stdout + report.stderr  # and say the study could not
