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

from gan.report import label, read_job, report
from gan.run.folders import job_order
from gan.run.names import job_number
from tests.helpers import events, hparams_dashboard, run_cli

TINY = ("trainer=cpu", "trainer.max_steps=4", "trainer.log_every_n_steps=2", "sample_every=2", "eval_every=0",
        "optimized_metric=loss/g", "callbacks.progress_bar.refresh_rate=0")
pytestmark = pytest.mark.usefixtures("mnist_root")


def statuses(sweep: Path) -> dict[str, dict]:
    found = sorted(sweep.glob("*/status.json"), key=lambda p: job_order(p.parent))  # 0, 1, ..., 10: as numbered
    return {p.parent.name: json.loads(p.read_text()) for p in found}


def test_an_optuna_study_is_stored_and_running_the_command_again_continues_it(tmp_path):
    command = ("hparams_search=optuna_quick", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", *TINY)
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
    assert [job_number(study / job) for job in jobs] == [0, 1, 2, 3] and all(s["status"] == "completed" for s in jobs.values())
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
    assert set(table) == {"0_batch_size-8_lr-2e-4", "1_batch_size-8_lr-1e30", "2_batch_size-100000_lr-2e-4",
                          "3_batch_size-100000_lr-1e30"}  # one row per job, named by what it changed
    assert {(r["data.batch_size"], r["optimizer.lr"], r["status"]) for r in table.values()} == {
        ("8", "0.0002", "completed"), ("100000", "0.0002", "failed"), ("8", "1e+30", "diverged"), ("100000", "1e+30", "failed")}
    completed = next(r for r in table.values() if r["status"] == "completed")
    g_loss = events(sweep / completed["job"]).Scalars("loss/g")[-1].value
    assert completed["rank"] == "1" and float(ranked_value(completed, "G loss ↓")) == pytest.approx(g_loss, rel=1e-3)
    assert all("more than the dataset" in r["error"] for r in table.values() if r["status"] == "failed")
    assert "failed" in (out / "jobs.md").read_text()
    assert {p.name for p in out.glob("*.png")} >= {"objective_vs_data.batch_size.png", "objective_vs_optimizer.lr.png",
                                                   "curves.png", "best_samples.png"}


def grid_search(folder: Path, params: dict[str, str], pruner: str = "none") -> str:
    """A search config of the user's own (`--config-dir`): every point of `params` once (GridSampler)."""
    (folder / "hparams_search").mkdir(parents=True)
    lines = ["# @package _global_", "defaults:", "  - override /hydra/sweeper: optuna", "hydra:", "  mode: MULTIRUN",
             "  sweeper:", "    study_name: grid", "    storage: sqlite:///${hydra.sweep.dir}/optuna.db",
             "    sampler: {_target_: optuna.samplers.GridSampler, _partial_: true}", f"    pruner: {pruner}",
             "    n_trials: 100", "    params:", *(f"      {k}: {v}" for k, v in params.items())]
    (folder / "hparams_search" / "grid.yaml").write_text("\n".join(lines) + "\n")
    return str(folder)


def trial_states(sweep: Path, name: str) -> list[str]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")
    return sorted(t.state.name for t in study.trials)


def test_a_pruner_stops_the_hopeless_trial_which_is_recorded_pruned_and_reported(tmp_path):
    """The non-saturating G loss, -log D(G(z)), is above 0.69 from the start, while hinge's -D(G(z)),
    minimax's log(1 - D(G(z))) and WGAN's -D(G(z)) start near or below 0: a threshold of 0.6 on
    loss/g at iteration 2 prunes exactly the non-saturating trial (measured: 0.81 against 0.37 at most)."""
    conf = grid_search(tmp_path / "conf", {"loss": "choice(nonsaturating, hinge, minimax, wgan_gp)"},
                       "{_target_: optuna.pruners.ThresholdPruner, upper: 0.6}")
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "grid"
    assert trial_states(sweep, "grid") == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]  # 4 points: the grid's size
    jobs = statuses(sweep)
    [pruned] = [name for name, s in jobs.items() if s["status"] == "pruned"]
    assert OmegaConf.load(sweep / pruned / ".hydra" / "overrides.yaml")[0] == "loss=nonsaturating"
    assert jobs[pruned]["metrics"]["global_step"] == 2 < 4  # stopped at its first report, not at max_steps
    assert torch_step(sweep / pruned / "checkpoints" / "last.ckpt") == 2  # its checkpoint and curves are kept
    assert [e.step for e in events(sweep / pruned).Scalars("loss/g")] == [2]
    out = report(str(sweep))
    with open(out / "jobs.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["completed", "completed", "completed", "pruned"]  # ranked after the others
    notes = (out / "notes.txt").read_text()
    assert "4 trials, 3 complete, 1 pruned" in notes and (out / "optuna_history.png").exists()


def test_several_objectives_give_a_pareto_front_in_the_report(tmp_path):
    conf = grid_search(tmp_path / "conf", {"loss": "choice(nonsaturating, hinge, lsgan)"})
    with open(Path(conf) / "hparams_search" / "grid.yaml", "a") as f:
        f.write("    direction: [minimize, maximize]\noptimized_metric: [loss/d, train/d_acc]\n")
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY[:-2], "callbacks.progress_bar.refresh_rate=0",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "grid"
    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.directions) == 2 and all(len(t.values) == 2 for t in study.trials)
    out = report(str(sweep))
    with open(out / "jobs.csv") as f:
        table = list(csv.DictReader(f))
    front = {r["job"] for r in table if r["Pareto front"] == "★"}
    values = {next(j.name for j in sweep.iterdir() if job_number(j) == t.number): t.values for t in study.trials}
    beaten = lambda a: any(b[0] <= a[0] and b[1] >= a[1] and b != a for b in values.values())
    assert front == {job for job, v in values.items() if not beaten(v)} and front
    assert (out / "optuna_pareto_front.png").exists() and "Pareto front" in (out / "notes.txt").read_text()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_optuna_dashboard_serves_the_study(tmp_path, kind):
    import socket
    import time
    import urllib.request

    from gan.sweeps.storages import open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="seen", storage=open_storage(url))  # as the sweeper writes it
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    where = [url] if kind == "sqlite" else [str(tmp_path / "study.log"), "--storage-class", "JournalFileStorage"]
    server = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), *where, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=1).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert '"study_name": "seen"' in body.replace('":"', '": "')
    finally:
        server.terminate()
        server.wait()


def torch_step(ckpt: Path) -> int:
    import torch

    return torch.load(ckpt, weights_only=True)["global_step"]


def test_failing_and_diverging_trials_are_recorded_failed_and_the_study_goes_on(tmp_path):
    conf = grid_search(tmp_path / "conf", {"data.batch_size": "choice(8, 100000)", "optimizer.lr": "choice(2e-4, 1e30)"})
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, "callbacks.health.action=stop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "grid"
    assert trial_states(sweep, "grid") == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
    assert sorted(s["status"] for s in statuses(sweep).values()) == ["completed", "diverged", "failed", "failed"]


def test_the_project_installs_with_sqlalchemy_2_and_current_optuna():
    from importlib.metadata import requires, version

    import sqlalchemy

    assert int(sqlalchemy.__version__.split(".")[0]) >= 2 and int(optuna.__version__.split(".")[0]) >= 4
    pins = [r for r in requires("gan") if r.split(">")[0].split("<")[0].strip().lower() in ("optuna", "sqlalchemy")]
    assert sorted(pins) == ["optuna>=4", "sqlalchemy>=2"]  # lower bounds only: no downgrade of a current environment
    assert not [r for r in requires("gan") if "hydra-optuna-sweeper" in r]
    assert int(version("sqlalchemy").split(".")[0]) >= 2  # the installed distribution, not only the module


def write_seed_grid(sweep: Path, fids: dict[tuple[str, str], float]) -> None:
    """Job folders as a `-m model.latent_dim=A,B seed=1,2,3` sweep leaves them, with final FIDs."""
    from torch.utils.tensorboard import SummaryWriter

    for i, ((latent, seed), value) in enumerate(fids.items()):
        job = sweep / str(i)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"model.latent_dim={latent}", f"seed={seed}"]), job / ".hydra" / "overrides.yaml")
        OmegaConf.save(OmegaConf.create({"optimized_metric": "metrics/fid"}), job / ".hydra" / "config.yaml")
        (job / "status.json").write_text(json.dumps({"status": "completed", "objective": value, "started": 0, "ended": 1}))
        with SummaryWriter(str(job)) as writer:
            writer.add_scalar("metrics/fid", value, 100)


def test_the_report_groups_seeds_into_mean_and_std_and_ranks_on_the_mean(tmp_path):
    fids = {("32", "1"): 40.0, ("32", "2"): 44.0, ("32", "3"): 48.0, ("64", "1"): 30.0, ("64", "2"): 50.0, ("64", "3"): 55.0}
    write_seed_grid(tmp_path, fids)
    out = report(str(tmp_path))
    with open(out / "seeds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model.latent_dim"] for r in rows] == ["32", "64"]  # mean 44 beats 45, though 64 has the best single run
    assert rows[0]["fid ↓"] == "44 ± 4.0 (n=3)" and rows[1]["fid ↓"] == "45 ± 13 (n=3)"
    assert rows[0]["seeds"] == "1,2,3" and rows[0]["finished"] == "3/3"
    assert "seeds.md" in (out / "notes.txt").read_text()


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
    assert rows[0].keys() == rows[1].keys() and {"loss", "model.latent_dim", "optimizer.lr"} <= rows[0].keys()
    assert rows[0]["experiment"] == "default" and {r["loss"] for r in rows} == {"nonsaturating", "hinge"}
    columns, metrics, names = hparams_dashboard(tmp_path / "sweep")  # what the table shows first
    assert columns == ["loss"] and metrics[:2] == ["loss/d", "loss/g"]  # what the sweep varied, nothing constant
    assert sorted(names) == ["loss=hinge · job 1 · sweep", "loss=nonsaturating · job 0 · sweep"]  # what changed leads
    assert set(names.values()) == {"STATUS_SUCCESS"}


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


def test_a_run_the_health_monitor_stops_says_why_and_where_everywhere(tmp_path, caplog):
    from gan.training.job import run
    from tests.helpers import make_cfg, quick

    # "D wins" whenever D(x) > 0 and D(G(z)) < 1, i.e. always: the monitor stops the run after 3 iterations
    with caplog.at_level("INFO", logger="gan.training.job"):
        run(make_cfg(*quick("callbacks.health.action=stop", "callbacks.health.d_real_above=0",
                            "callbacks.health.d_fake_below=1", "callbacks.health.window=3"), run_dir=tmp_path))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "stopped" and status["metrics"]["global_step"] < 12
    assert status["ended"] > status["started"]
    stop = status["stop"]  # which rule, its numbers, and where
    assert stop["rule"] == "health.d_wins" and stop["iteration"] == status["metrics"]["global_step"] and status["max_steps"] == 12
    assert "D(x) > 0 and D(G(z)) < 1 for 3 iterations" in stop["reason"]
    assert f"Run stopped at {stop['iteration']}/12: D wins outright" in caplog.text  # the console's ending
    _, _, rows = hparams_dashboard(tmp_path)
    assert list(rows.values()) == ["STATUS_FAILURE"]  # HParams' Status filter: it did not reach its end
    assert read_job(tmp_path).stopped == f"stopped at {stop['iteration']}/12: {stop['reason']}"  # gan.report's column


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


def ranked_value(row: dict[str, str], name: str) -> str:
    """The report's ranking column, which is named by what it ranks by (`FID ↓ (ranked by)`)."""
    column = next(c for c in row if "(ranked by" in c)
    assert column.startswith(name), column
    return row[column]


def fake_job(sweep: Path, name: str, overrides: list[str], fids: list[float] | None, tag: str = "metrics/fid") -> None:
    """A finished job folder as a grid sweep without optimized_metric leaves it."""
    from torch.utils.tensorboard import SummaryWriter

    from gan.run.status import write_status

    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"optimized_metric": None}), folder / ".hydra" / "config.yaml")
    write_status(folder, status="completed", started=0.0, ended=10.0, objective=None)
    with SummaryWriter(str(folder)) as writer:
        writer.add_scalar("loss/g", 1.0, 100)
        for step, fid in enumerate(fids or [], 1):
            writer.add_scalar(tag, fid, 50 * step)
    (folder / "images").mkdir()
    for step in (50, 100):
        fake_grid(folder / "images" / f"{step:06d}.png", name, step)


def fake_grid(path: Path, name: str, step: int) -> None:
    """A sample grid of one colour, its own for each job and iteration."""
    from PIL import Image

    Image.new("RGB", (60, 40), grid_colour(name, step)).save(path)


def grid_colour(name: str, step: int) -> tuple[int, int, int]:
    return (int(name) * 40 % 256 if name.isdigit() else 7, step % 256, 99)


def shows_grid(png: Path, name: str, step: int) -> bool:
    """Whether best_samples.png is job `name`'s grid of iteration `step` under its caption."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    return image.getpixel((30, image.height - 5)) == grid_colour(name, step) and image.getpixel((2, 2)) == (255, 255, 255)


def test_a_sweep_without_an_objective_is_ranked_by_its_last_fid_and_labelled_by_overrides(tmp_path):
    fake_job(tmp_path, "0", ["model.latent_dim=32"], [2100.0, 2038.0])
    fake_job(tmp_path, "1", ["model.latent_dim=64"], [2200.0, 1974.0])
    out = report(str(tmp_path))
    with open(out / "jobs.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["rank"], r["model.latent_dim"]) for r in table] == [("1", "64"), ("2", "32")]  # FID 1974 before 2038
    assert "Ranked by last metrics/fid (lower is better)." in (out / "notes.txt").read_text()
    assert shows_grid(out / "best_samples.png", "1", 100)  # the best job's last grid
    assert {p.name for p in out.glob("*.png")} == {"objective_vs_model.latent_dim.png", "curves.png", "best_samples.png"}
    assert label(read_job(tmp_path / "0"), ["model.latent_dim"]) == "latent_dim=32"  # the curves' legend


def test_the_report_reads_protocol_tagged_scores_and_says_when_protocols_differ(tmp_path):
    fake_job(tmp_path, "0", ["model.latent_dim=32"], [2100.0, 2038.0], tag="metrics/classifier10k_test/fid")
    fake_job(tmp_path, "1", ["model.latent_dim=64"], [2200.0, 1974.0], tag="metrics/classifier10k_test/fid")
    out = report(str(tmp_path))
    with open(out / "jobs.csv") as f:
        assert [r["model.latent_dim"] for r in csv.DictReader(f)] == ["64", "32"]  # ranked on the tagged FID
    assert read_job(tmp_path / "0").protocol == "classifier10k_test"
    assert "Metrics scored under the classifier10k_test protocol." in (out / "notes.txt").read_text()
    fake_job(tmp_path, "2", ["model.latent_dim=16"], [50.0], tag="metrics/fid50k_train/fid")
    notes = (report(str(tmp_path)) / "notes.txt").read_text()
    assert "Metrics scored under 2 protocols, whose numbers do not compare (classifier10k_test: 0, 1; fid50k_train: 2)." in notes


def test_a_sweep_with_nothing_to_rank_writes_no_empty_plot_and_says_so(tmp_path):
    fake_job(tmp_path, "0", ["model.latent_dim=32"], None)
    fake_job(tmp_path, "1", ["model.latent_dim=64"], None)
    out = report(str(tmp_path))
    assert not list(out.glob("*.png"))
    notes = (out / "notes.txt").read_text()
    assert notes.startswith("Not ranked: the jobs have no objective")
    assert "Left out objective_vs_model.latent_dim.png" in notes and "Left out curves.png" in notes
    assert "Left out best_samples.png" in notes
