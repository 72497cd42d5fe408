"""A sweep read at a glance: jobs named by what they changed (folders, TensorBoard runs, HParams
rows), early stops recorded with their reason and iteration (status.json, HParams, Optuna, the
report), the HParams columns a sweep varies, the real-data floor in every view, and the end of a
sweep pointing at the sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib
import optuna
import pytest
from omegaconf import OmegaConf
from PIL import Image

from gan.report import report
from gan.run.names import short_keys, short_value, varying
from tests.helpers import events, hparams_dashboard, run_cli
from tests.sweeps.test_sweeps import TINY, fake_job, grid_search, ranked_value, statuses

pytestmark = pytest.mark.usefixtures("mnist_root")


def test_a_job_is_named_by_the_keys_its_sweep_varies_each_by_its_shortest_distinct_end():
    arguments = ["model.latent_dim=32,64", "trainer.max_steps=600", "data.batch_size=choice(32)", "threads=1",
                 "optimizer.generator.lr=tag(log, interval(1e-5, 1e-3))", "optimizer.discriminator.lr=1e-4,2e-4",
                 "loss=choice(hinge, lsgan)", "trainer.max_steps=100,200", "trainer.max_steps=300"]
    keys = varying(arguments)  # constants, one-value choices and a sweep replaced by a constant are not varied
    assert keys == ["model.latent_dim", "optimizer.generator.lr", "optimizer.discriminator.lr", "loss"]
    assert short_keys(keys) == {"model.latent_dim": "latent_dim", "optimizer.generator.lr": "generator.lr",
                                "optimizer.discriminator.lr": "discriminator.lr", "loss": "loss"}
    values = ("0.00012345678901", "0.0001", "0.5", "hinge", "100000000", "1e+30")  # as Hydra hands a job its values
    assert [short_value(v) for v in values] == ["1.23e-4", "1e-4", "0.5", "hinge", "100000000", "1e30"]


def test_a_grid_names_its_jobs_by_what_changed_and_its_views_show_the_sweep(mnist_classifier, tmp_path):
    result = run_cli("-m", *TINY, "eval_every=2", "callbacks.metrics.n=200", "optimized_metric=null",
                     "model.latent_dim=32,64", "optimizer.lr=1e-4,2e-4", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    names = ["0_latent_dim-32_lr-1e-4", "1_latent_dim-32_lr-2e-4", "2_latent_dim-64_lr-1e-4", "3_latent_dim-64_lr-2e-4"]
    assert list(statuses(sweep)) == names  # the folders, and so TensorBoard's run names; nothing constant in them
    columns, metrics, rows = hparams_dashboard(sweep)
    assert columns == ["model.latent_dim", "optimizer.lr"]  # what the sweep varied; G's and D's lr are optimizer.lr's
    assert metrics == [f"metrics/classifier200_test/{m}" for m in ("fid", "precision", "recall", "modes_covered", "kid")]
    assert sorted(rows) == [f"latent_dim={d} lr={lr} · job {n} · sweep" for n, (d, lr) in
                            enumerate([(32, "1e-4"), (32, "2e-4"), (64, "1e-4"), (64, "2e-4")])]
    assert set(rows.values()) == {"STATUS_SUCCESS"}
    console = result.stdout + result.stderr  # the sweep's end, not the last job's
    assert f"tensorboard --logdir {sweep.relative_to(tmp_path)}" in console
    assert f"python -m gan.report sweep={sweep.relative_to(tmp_path)}" in console
    assert "Sweep done: 4 jobs (4 completed)" in console

    matplotlib.style.use("ggplot")  # another style in this process (Optuna's views set this one): the colours hold
    out = report(str(sweep))
    matplotlib.style.use("default")
    with open(out / "jobs.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    floor = json.loads((sweep / names[0] / "status.json").read_text())["metrics_floor"]
    assert table[0]["rank"] == "floor" and float(ranked_value(table[0], "FID ↓")) == pytest.approx(floor["fid"], rel=1e-3)
    assert [r["job"] for r in table[1:]] == sorted(names, key=lambda n: float(ranked_value(
        next(r for r in table if r["job"] == n), "FID ↓")))  # ranked by the last FID, the column says so
    header = (out / "jobs.md").read_text().splitlines()[0]
    assert "intra_fid" not in header and "ended early" not in header  # no column with nothing in it
    scatter = Image.open(out / "objective_vs_model.latent_dim.png").convert("RGB")
    colours = {scatter.getpixel((x, y)) for x in range(scatter.width) for y in range(scatter.height)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # the points coloured by the other key, lr
    assert scatter.width > 600  # the legend beside the plot, not over its points
    assert events(sweep / names[0]).Scalars("floor/classifier200_test/fid")[0].value == pytest.approx(floor["fid"])


def test_an_optuna_trial_stopped_early_is_pruned_with_its_reason_and_every_trial_says_where_it_ran(tmp_path):
    conf = grid_search(tmp_path / "conf", {"model.latent_dim": "choice(32, 64)"})
    # "D wins" at once: the health monitor stops every trial (no pruner here, so it acts, as in_search asks)
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, "trainer.max_steps=12", "callbacks.health.action=stop",
                     "callbacks.health.d_real_above=0", "callbacks.health.d_fake_below=1", "callbacks.health.window=3",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "grid"
    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert study.metric_names == ["loss/g"]  # optuna-dashboard's axis, not "Objective 0"
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]  # never ranked as finished
    for trial in study.trials:
        attrs = trial.user_attrs
        folder = Path(attrs["run_folder"])
        assert folder.parent == sweep.resolve() and folder.name == f"{trial.number}_latent_dim-{trial.params['model.latent_dim']}"
        assert attrs["status"] == "stopped" and attrs["stop_rule"] == "health.d_wins" and attrs["max_steps"] == 12
        assert attrs["stopped_at"] == json.loads((folder / "status.json").read_text())["stop"]["iteration"] < 12
        assert "D wins outright" in attrs["stop_reason"] and "loss/g" in attrs
    out = report(str(sweep))
    with open(out / "jobs.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert all(r["status"] == "stopped" and r["ended early"].startswith("stopped at ") for r in table)
    assert "/12: D wins outright" in table[0]["ended early"]

    # the same trials in a search with a pruner: the monitor says it and leaves the verdict to the pruner
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, "trainer.max_steps=12", "callbacks.health.action=stop",
                     "callbacks.health.d_real_above=0", "callbacks.health.d_fake_below=1", "callbacks.health.window=3",
                     "hydra.sweeper.pruner=median", "hydra.sweeper.study_name=judged", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    judged = tmp_path / "outputs" / "optuna" / "judged"
    assert [s["status"] for s in statuses(judged).values()] == ["completed", "completed"]
    assert "the study's pruner judges this trial (callbacks.health.in_search=defer)" in result.stdout + result.stderr


def test_the_report_shows_every_searched_key_and_says_when_importances_rest_on_few_trials(tmp_path):
    for n, (lr, beta1) in enumerate([("0.0001", "0.5"), ("0.0002", "0.5")]):  # beta1 searched, sampled alike twice
        fake_job(tmp_path, str(n), [f"optimizer.generator.lr={lr}", f"optimizer.discriminator.lr={lr}",
                                    f"optimizer.beta1={beta1}"], [2000.0 - n])
    lr = "tag(log, interval(1e-5, 1e-3))"
    space = {"optimizer.generator.lr": lr, "optimizer.discriminator.lr": lr, "optimizer.beta1": "choice(0.5, 0.9)"}
    OmegaConf.save(OmegaConf.create({"hydra": {"sweeper": {"params": space}, "overrides": {"task": ["hparams_search=mine"]}}}),
                   tmp_path / "multirun.yaml")
    out = report(str(tmp_path))
    with open(out / "jobs.csv", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert {"optimizer.generator.lr", "optimizer.discriminator.lr", "optimizer.beta1"} <= set(header)
    assert (out / "objective_vs_optimizer.beta1.png").exists()
    from gan.report import label, read_job

    keys = ["optimizer.generator.lr", "optimizer.discriminator.lr"]
    assert label(read_job(tmp_path / "0"), keys) == "generator.lr=1e-4, discriminator.lr=1e-4"  # which network

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="few")
    for x in (0.1, 0.5, 0.9):
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": 1 - x}, value=x, distributions={
            "x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.FloatDistribution(0, 1)}))
    notes = (report(str(tmp_path)) / "notes.txt").read_text()
    assert "optuna_importance.png rests on 3 complete trials" in notes
    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's ggplot style did not leak out of the report


@pytest.mark.slow
def test_the_readmes_quick_search_run_as_printed_completes_its_trials(mnist_classifier, tmp_path):
    """`python train.py hparams_search=optuna_quick`, two of its trials: the health monitor used to stop
    every one at its first evaluation (any MNIST GAN covers few classes at iteration 1000); in a
    search with a pruner it defers to the pruner, and the trials run to their end."""
    result = run_cli("hparams_search=optuna_quick", "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "optuna" / "optuna_quick"
    assert [s["status"] for s in statuses(sweep).values()] == ["completed", "completed"]
    study = optuna.load_study(study_name="optuna_quick", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.user_attrs["status"] == "completed" and "metrics/fid" in t.user_attrs for t in study.trials)
