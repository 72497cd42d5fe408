"""Sweeps as users launch them (subprocesses): a stored Optuna study that continues, failing
jobs that do not stop a sweep, parallel and submitit launchers, and the sweep report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from tensorboard.plugins.hparams import plugin_data_pb2

import gan.study  # noqa: F401  (before optuna: quiets SQLAlchemy's 2.0 notice, as train.py does)
from gan.report import label, read_job, report
from tests.helpers import events, hparams_dashboard, run_cli

TINY = ("trainer=cpu", "trainer.max_steps=4", "trainer.log_every_n_steps=2", "sample_every=2", "eval_every=0",
        "optimized_metric=loss/g", "callbacks.progress_bar.refresh_rate=0")
pytestmark = pytest.mark.usefixtures("mnist_root")


def statuses(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/status.json"))}


def test_an_optuna_study_is_stored_and_running_the_command_again_continues_it(tmp_path):
    command = ("hparams_search=optuna_quick", "hydra.sweeper.n_trials=2", *TINY)
    study = tmp_path / "outputs" / "optuna" / "optuna_quick"
    trials = []
    for _ in range(2):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        trials.append(optuna.load_study(study_name="optuna_quick", storage=f"sqlite:///{study / 'optuna.db'}").trials)
    assert [len(t) for t in trials] == [2, 4]  # grown, not restarted
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials[1])
    first, second = ([t.params for t in ts] for ts in (trials[1][:2], trials[1][2:]))
    assert first != second  # the continued study samples new points, not the first invocation's again
    jobs = statuses(study)
    assert sorted(jobs) == ["0", "1", "2", "3"] and all(s["status"] == "completed" for s in jobs.values())
    assert not list((tmp_path / "outputs" / "optuna").glob("optuna_quick_*"))  # continued in place
    assert not (tmp_path / "outputs" / "multirun").exists()  # and no stray timestamped folder


def test_failing_and_diverging_jobs_do_not_stop_a_sweep_and_the_report_lists_them(tmp_path):
    result = run_cli("-m", *TINY, "callbacks.health.action=stop", "data.batch_size=8,100000", "optimizer.lr=2e-4,1e30",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    out = report(str(sweep))
    with open(out / "jobs.csv") as f:
        table = {row["job"]: row for row in csv.DictReader(f)}
    assert set(table) == {"0", "1", "2", "3"}  # one row per job
    assert {(r["data.batch_size"], r["optimizer.lr"], r["status"]) for r in table.values()} == {
        ("8", "0.0002", "completed"), ("100000", "0.0002", "failed"), ("8", "1e+30", "diverged"), ("100000", "1e+30", "failed")}
    completed = next(r for r in table.values() if r["status"] == "completed")
    g_loss = events(sweep / completed["job"]).Scalars("loss/g")[-1].value
    assert completed["rank"] == "1" and float(completed["objective"]) == pytest.approx(g_loss, rel=1e-3)
    assert all("more than the dataset" in r["error"] for r in table.values() if r["status"] == "failed")
    assert "failed" in (out / "jobs.md").read_text()
    assert {p.name for p in out.glob("*.png")} >= {"objective_vs_data.batch_size.png", "objective_vs_optimizer.lr.png",
                                                   "curves.png", "best_samples.png"}


def hparams_row(run: Path) -> dict[str, str | float | bool]:
    content = events(run).SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    row = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in row.items()}


def test_joblib_runs_jobs_in_parallel_with_the_cores_shared_and_hparams_shows_what_was_swept(tmp_path):
    result = run_cli("-m", *TINY, "trainer.max_steps=30", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "loss=nonsaturating,hinge", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = statuses(tmp_path / "sweep")
    assert [s["status"] for s in jobs.values()] == ["completed", "completed"]
    a, b = jobs.values()
    assert a["started"] < b["ended"] and b["started"] < a["ended"]  # the two jobs overlapped in time
    assert all(s["threads"] == max(1, (os.cpu_count() or 1) // 2) for s in jobs.values())
    rows = [hparams_row(tmp_path / "sweep" / job) for job in jobs]
    assert rows[0].keys() == rows[1].keys() and {"loss", "model.latent_dim", "optimizer.generator.lr"} <= rows[0].keys()
    assert rows[0]["experiment"] == "default" and {r["loss"] for r in rows} == {"nonsaturating", "hinge"}
    columns, metrics, names = hparams_dashboard(tmp_path / "sweep")  # what the table shows first
    assert columns[0] == "loss" and metrics[:2] == ["loss/d", "loss/g"]
    assert sorted(n.split()[0] for n in names) == ["loss=hinge", "loss=nonsaturating"]  # the swept value leads


def test_the_submitit_local_launcher_runs_a_job(tmp_path):
    result = run_cli("-m", *TINY, "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [s["status"] for s in statuses(tmp_path / "sweep").values()] == ["completed"]
    assert (tmp_path / "sweep" / ".submitit").is_dir()


def test_the_slurm_launcher_config_composes_with_the_cluster_keys():
    from hydra import compose, initialize_config_dir

    from tests.helpers import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.timeout_min > 0 and launcher.gpus_per_node == 1 and launcher.cpus_per_task > 0
    assert launcher.tasks_per_node == 1 and launcher.nodes == 1

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # several devices: one task per device
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (4, 2, 4)


def test_a_run_the_health_monitor_stops_is_marked_stopped(tmp_path):
    from gan.job import run
    from tests.helpers import make_cfg, quick

    # "D wins" whenever D(x) > 0 and D(G(z)) < 1, i.e. always: the monitor stops the run after 3 iterations
    run(make_cfg(*quick("callbacks.health.action=stop", "callbacks.health.d_real_above=0", "callbacks.health.d_fake_below=1",
                        "callbacks.health.window=3"), run_dir=tmp_path))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "stopped" and status["metrics"]["global_step"] < 12
    assert status["ended"] > status["started"]


def test_the_report_reads_a_sweep_without_importing_torch_or_lightning():
    code = "import sys, gan.report; print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_search_dimensions_on_the_command_line_replace_the_configs(tmp_path):
    """`key=choice(...)` on the command line is a dimension of the study (over the config's, even
    a fixed one), and `key=value` fixes a key for every trial."""
    result = run_cli("hparams_search=optuna_quick", "hydra.sweeper.n_trials=3", *TINY, "data.batch_size=choice(16,24)",
                     "model.latent_dim=12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = tmp_path / "outputs" / "optuna" / "optuna_quick"
    trials = optuna.load_study(study_name="optuna_quick", storage=f"sqlite:///{study / 'optuna.db'}").trials
    assert {t.params["data.batch_size"] for t in trials} <= {16, 24} and len(trials) == 3
    configs = [OmegaConf.load(f) for f in study.glob("*/.hydra/config.yaml")]
    assert len(configs) == 3 and all(c.data.batch_size in (16, 24) and c.model.latent_dim == 12 for c in configs)


def fake_job(sweep: Path, name: str, overrides: list[str], fids: list[float] | None) -> None:
    """A finished job folder as a grid sweep without optimized_metric leaves it."""
    from torch.utils.tensorboard import SummaryWriter

    from gan.status import write_status

    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"optimized_metric": None}), folder / ".hydra" / "config.yaml")
    write_status(folder, status="completed", started=0.0, ended=10.0, objective=None)
    with SummaryWriter(str(folder)) as writer:
        writer.add_scalar("loss/g", 1.0, 100)
        for step, fid in enumerate(fids or [], 1):
            writer.add_scalar("metrics/fid", fid, 50 * step)
    (folder / "images").mkdir()
    for step in (50, 100):
        (folder / "images" / f"{step:06d}.png").write_bytes(f"{name} {step}".encode())


def test_a_sweep_without_an_objective_is_ranked_by_its_last_fid_and_labelled_by_overrides(tmp_path):
    fake_job(tmp_path, "0", ["model.latent_dim=32"], [2100.0, 2038.0])
    fake_job(tmp_path, "1", ["model.latent_dim=64"], [2200.0, 1974.0])
    out = report(str(tmp_path))
    with open(out / "jobs.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["rank"], r["model.latent_dim"]) for r in table] == [("1", "64"), ("2", "32")]  # FID 1974 before 2038
    assert "Ranked by last metrics/fid (lower is better)." in (out / "notes.txt").read_text()
    assert (out / "best_samples.png").read_bytes() == b"1 100"  # the best job's last grid
    assert {p.name for p in out.glob("*.png")} == {"objective_vs_model.latent_dim.png", "curves.png", "best_samples.png"}
    assert label(read_job(tmp_path / "0"), ["model.latent_dim"]) == "latent_dim=32"  # the curves' legend


def test_a_sweep_with_nothing_to_rank_writes_no_empty_plot_and_says_so(tmp_path):
    fake_job(tmp_path, "0", ["model.latent_dim=32"], None)
    fake_job(tmp_path, "1", ["model.latent_dim=64"], None)
    out = report(str(tmp_path))
    assert not list(out.glob("*.png"))
    notes = (out / "notes.txt").read_text()
    assert notes.startswith("Not ranked: the jobs have no objective")
    assert "Left out objective_vs_model.latent_dim.png" in notes and "Left out curves.png" in notes
    assert "Left out best_samples.png" in notes
