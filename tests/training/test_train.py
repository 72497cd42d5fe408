"""Real (short) training runs on MNIST: what a run writes, resuming, determinism, sweeps."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gan.errors import UserError
from gan.evaluate import Args as EvaluateArgs
from gan.evaluate import evaluate
from gan.generate import Args as GenerateArgs
from gan.generate import write
from gan.module import LOGGED_METRICS
from gan.training.fit import fit
from tests.helpers import (
    DATA_ROOT,
    ROOT,
    events,
    generator_weights,
    hparams_dashboard,
    make_cfg,
    optimizer_steps,
    quick,
    run_cli,
    write_idx,
)


@pytest.fixture(scope="module")
def short_run(mnist_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = fit(make_cfg(*quick(), run_dir=run_dir))
    return run_dir, metrics


def test_short_run_writes_losses_samples_and_checkpoints(short_run):
    run_dir, metrics = short_run
    assert all(math.isfinite(metrics[tag]) for tag in LOGGED_METRICS)
    acc = events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert set(LOGGED_METRICS) | {"train/lr_g", "train/lr_d"} <= scalars
    assert [e.step for e in acc.Scalars("loss/d")] == [3, 6, 9, 12]  # every 3rd iteration
    assert [e.step for e in acc.Images("samples")] == [5, 10, 12]
    assert "config/text_summary" in acc.Tags()["tensors"]
    assert sorted(p.name for p in (run_dir / "images").glob("*.png")) == ["000005.png", "000010.png", "000012.png"]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt", "step_000006.ckpt", "step_000012.ckpt"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12


def test_hparams_row_holds_the_headline_keys_and_the_groups_and_lets_tensorboard_pick_the_columns(short_run):
    from tensorboard.plugins.hparams import metadata

    run_dir, _ = short_run
    acc = events(run_dir)
    assert "_hparams_/experiment" not in acc.Tags()["tensors"]  # one run's column list would hide the others' keys
    session = metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    headline = {"model.latent_dim", "optimizer.lr", "data.batch_size", "trainer.max_steps", "gan.d_update"}
    assert headline <= set(session.hparams)  # G's and D's lr are ${optimizer.lr}: shown once, as the key they come from
    assert not {"optimizer.generator.lr", "optimizer.discriminator.lr"} & set(session.hparams)
    columns, metrics, rows = hparams_dashboard(run_dir)
    assert metrics == ["loss/d", "loss/g", "train/d_acc", "train/d_fake", "train/d_real"]  # the losses come first
    assert list(rows) == [session.group_name] and len(columns) == 5


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(short_run, tmp_path):
    run_dir, _ = short_run
    resumed = tmp_path / "resumed"
    fit(make_cfg(*quick("trainer.max_steps=18", f"ckpt_path={run_dir}"), run_dir=resumed))  # a run folder works as ckpt_path
    last = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 18
    assert sorted(p.name for p in (resumed / "images").glob("*.png")) == ["000015.png", "000018.png"]
    assert [e.step for e in events(resumed).Scalars("loss/d")] == [15, 18]

    straight = tmp_path / "straight"
    fit(make_cfg(*quick("trainer.max_steps=18"), run_dir=straight))
    a, b = generator_weights(resumed / "checkpoints" / "last.ckpt"), generator_weights(straight / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same batches, same noise, same optimizer state


def test_same_seed_gives_identical_losses_and_another_seed_does_not(mnist_root, tmp_path):
    runs = {name: fit(make_cfg(*quick(f"seed={seed}", "trainer.max_steps=9"), run_dir=tmp_path / name))
            for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    assert runs["a"] == runs["b"]
    assert runs["a"]["loss/g"] != runs["c"]["loss/g"]


@pytest.mark.parametrize("overrides, g_steps, d_steps", [
    ((), 12, 24),                                  # the Keras example: two D steps (reals, then fakes) per iteration
    (("gan.d_update=joint",), 12, 12),             # one D step on the summed loss
    (("gan.n_critic=3", "data.sampling=epochs"), 12, 72),  # three real batches per iteration, two steps each
])
def test_optimizer_steps_per_gan_iteration(overrides, g_steps, d_steps, mnist_root, tmp_path):
    fit(make_cfg(*quick(*overrides), run_dir=tmp_path))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 12
    assert optimizer_steps(ckpt) == [g_steps, d_steps]


def test_64_bit_precision_trains(mnist_root, tmp_path):
    metrics = fit(make_cfg(*quick("trainer.precision=64-true"), run_dir=tmp_path))
    assert all(math.isfinite(metrics[tag]) for tag in LOGGED_METRICS)
    assert generator_weights(tmp_path / "checkpoints" / "last.ckpt")["generator.net.0.weight"].dtype == torch.float64


def test_without_the_checkpoint_callback_no_lightning_default_checkpoints_appear(mnist_root, tmp_path):
    fit(make_cfg(*quick("~callbacks.checkpoint"), run_dir=tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="nope.ckpt: no checkpoint there"):
        fit(make_cfg(*quick(f"ckpt_path={tmp_path / 'nope.ckpt'}"), run_dir=tmp_path))


@pytest.mark.slow
def test_cli_runs_land_in_their_own_folders_and_never_write_into_another(mnist_root, tmp_path):
    first = run_cli("debug=fast", "trainer=cpu", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_cli("debug=fast", "trainer=cpu", "seed=7", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    runs = sorted(p.parent for p in (tmp_path / "outputs" / "debug").glob("*/*/.hydra"))
    assert len(runs) == 2 and [p.name for p in (tmp_path / "outputs").iterdir()] == ["debug"]  # smoke runs apart
    for run in runs:
        assert {"checkpoints", "images", ".hydra", "train.log"} <= {p.name for p in run.iterdir()}
        assert list(run.glob("events.out.tfevents.*"))
        assert "_hparams_/session_start_info" not in events(run).Tags()["tensors"]  # not in the HParams table
    assert {yaml.safe_load((r / ".hydra" / "config.yaml").read_text())["seed"] for r in runs} == {42, 7}
    console = first.stdout + first.stderr  # what a person sees: no noise, and an ending that says where to look
    assert not any(noise in console for noise in ("GPU available", "TPU available", "💡 Tip", "FLOPs"))
    assert "Networks: G MLPGenerator (1.49 M parameters)" in console
    assert "Run completed at iteration 20" in console and "last logged:     loss/d " in console
    assert f"look at them:    tensorboard --logdir {runs[0]}" in console

    before = {p: p.read_bytes() for p in runs[0].rglob("*") if p.is_file()}
    again = run_cli("debug=fast", "trainer=cpu", "seed=3", "trainer.max_steps=25", f"ckpt_path={runs[0]}",
                    f"hydra.run.dir={runs[0]}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already holds files" in again.stdout + again.stderr
    assert {p: p.read_bytes() for p in runs[0].rglob("*") if p.is_file()} == before  # untouched
    moved = runs[0].with_name(runs[0].name + "_1")
    assert yaml.safe_load((moved / ".hydra" / "config.yaml").read_text())["seed"] == 3
    assert torch.load(moved / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 25  # resumed at 20


@pytest.mark.slow
def test_multirun_of_two_by_two_overrides_makes_four_distinct_runs(mnist_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "debug=fast", "trainer=cpu", "model.latent_dim=8,16", "optimizer.lr=1e-4,3e-4",
                     "trainer.max_steps=4", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_latent_dim-8_lr-1e-4", "1_latent_dim-8_lr-3e-4", "2_latent_dim-16_lr-1e-4",
                                      "3_latent_dim-16_lr-3e-4"]  # named by what each changed
    configs = [yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) for job in jobs]
    assert {(c["model"]["latent_dim"], c["optimizer"]["lr"]) for c in configs} == {(8, 1e-4), (8, 3e-4), (16, 1e-4), (16, 3e-4)}
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").exists() and list(job.glob("events.out.tfevents.*"))

    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*")}
    again = run_cli("-m", "debug=fast", "trainer=cpu", "model.latent_dim=8,16", "trainer.max_steps=4",
                    f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*")} == before  # the first sweep is untouched
    assert sorted(p.name for p in (tmp_path / "sweep_1").iterdir() if p.is_dir()) == ["0_latent_dim-8", "1_latent_dim-16"]


def test_fashion_mnist_trains_from_idx_files_under_its_own_folder(tmp_path):
    for split, n in (("train", 96), ("test", 16)):
        write_idx(tmp_path / "data" / "FashionMNIST" / "raw", n, split)
    metrics = fit(make_cfg(*quick("data=fashion_mnist", f"data.root={tmp_path / 'data'}", "data.batch_size=8",
                                    "data.download=false"), run_dir=tmp_path / "run"))
    assert all(math.isfinite(metrics[tag]) for tag in LOGGED_METRICS)
    assert (tmp_path / "run" / "images" / "000012.png").exists()


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_other_loggers(logger, mnist_root, tmp_path):
    fit(make_cfg(*quick(f"logger={logger}"), run_dir=tmp_path))
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "last.ckpt").exists() and (tmp_path / "images" / "000012.png").exists()
    if logger == "csv":
        header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
        assert set(LOGGED_METRICS) <= set(header)
        assert "model.latent_dim" in (tmp_path / "csv" / "hparams.yaml").read_text()


@pytest.mark.parametrize("action", ["warn", "stop"])
def test_health_monitor_flags_a_discriminator_that_wins_outright(action, mnist_root, tmp_path, caplog):
    # lr 0 for G and a fast D: D separates reals from the frozen G's fakes within a few iterations.
    cfg = make_cfg(*quick("trainer.max_steps=60", "trainer.log_every_n_steps=2", "optimizer.generator.lr=1e-12",
                          "optimizer.discriminator.lr=2e-3", "callbacks.health.window=10", f"callbacks.health.action={action}"),
                   run_dir=tmp_path)
    with caplog.at_level("WARNING", logger="gan.callbacks"):
        fit(cfg)
    warnings = [r.getMessage() for r in caplog.records if "D wins outright" in r.getMessage()]
    assert len(warnings) == 1  # once, not every step
    flags = {e.step: e.value for e in events(tmp_path).Scalars("warnings/d_wins")}
    first = min(step for step, on in flags.items() if on)
    assert all(on == 0 for step, on in flags.items() if step < first)
    last_step = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert last_step == (first if action == "stop" else 60)


def test_health_monitor_flags_nonfinite_losses(mnist_root, tmp_path, caplog):
    cfg = make_cfg(*quick("optimizer.lr=1e30", "optimizer=sgd", "trainer.log_every_n_steps=1", "callbacks.health.action=stop"),
                   run_dir=tmp_path)
    with caplog.at_level("WARNING", logger="gan.callbacks"):
        fit(cfg)
    assert any("NaN or infinite" in r.getMessage() for r in caplog.records)
    assert max(e.value for e in events(tmp_path).Scalars("warnings/nonfinite")) == 1


def test_checkpoint_callbacks_may_share_an_interval(mnist_root, tmp_path):
    """Lightning refuses two ModelCheckpoints with the same state key; ours are keyed by name."""
    fit(make_cfg(*quick("callbacks.checkpoint.every_n_train_steps=6", "callbacks.last.every_n_train_steps=6"), run_dir=tmp_path))
    states = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert all(any(f"'name': '{name}'" in key for key in states) for name in ("checkpoint", "last", "best"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "step_000006.ckpt", "step_000012.ckpt"]


def test_checkpoint_names_and_last_ckpt_hold_the_iteration_they_say(mnist_root, tmp_path):
    """Files named by the iteration saved, not by the last logged `step` (here logged every 5,
    saved every 6); last.ckpt of a finished run holds its final iteration (13, not 10)."""
    fit(make_cfg(*quick("trainer.max_steps=13", "trainer.log_every_n_steps=5", "callbacks.checkpoint.every_n_train_steps=6",
                        "callbacks.last.every_n_train_steps=5"), run_dir=tmp_path))
    saved = {p.name: torch.load(p, weights_only=True)["global_step"] for p in (tmp_path / "checkpoints").iterdir()}
    assert saved == {"step_000006.ckpt": 6, "step_000012.ckpt": 12, "last.ckpt": 13}


class Evil:
    """Unpickling this runs a shell command: what a crafted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, short_run) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = (short_run[0] / "checkpoints" / "last.ckpt").read_bytes()
    files = {"truncated": good[: len(good) // 2], "empty": b"", "text": b"not a checkpoint\n"}
    for name, data in files.items():
        (folder / f"{name}.ckpt").write_bytes(data)
    torch.save({"state_dict": {}, "config": Evil(folder / "PWNED")}, folder / "crafted.ckpt")
    return {name: folder / f"{name}.ckpt" for name in [*files, "crafted"]}


@pytest.mark.parametrize("use", ["resume", "evaluate", "generate"])
@pytest.mark.parametrize("kind", ["crafted", "truncated", "empty", "text"])
def test_an_unsafe_or_broken_checkpoint_is_refused_in_one_paragraph_and_never_runs_code(kind, use, bad_checkpoints, tmp_path):
    path = bad_checkpoints[kind]
    if use == "resume":
        call = lambda: fit(make_cfg(*quick(f"ckpt_path={path}"), run_dir=tmp_path / "run"))
    elif use == "evaluate":
        call = lambda: evaluate(EvaluateArgs(ckpt=str(path), n=10))
    else:
        call = lambda: write(GenerateArgs(ckpt=str(path), n=2, out=str(tmp_path / "x.png")))
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert ("could run code" in message) if kind == "crafted" else ("not a readable checkpoint" in message)
    assert not (path.parent / "PWNED").exists()  # the crafted file's command never ran
    assert not (tmp_path / "run" / "checkpoints").exists()  # a refused resume trains nothing


def test_a_diverging_run_stops_keeps_only_finite_checkpoints_and_fails_with_standard_json(mnist_root, tmp_path):
    """The default health action stops on NaN losses; no checkpoint holds non-finite weights; the
    single run ends with an error; status.json is standard JSON (no bare NaN)."""
    from gan.training.job import run

    cfg = make_cfg(*quick("optimizer=sgd", "optimizer.lr=1e30", "trainer.log_every_n_steps=1", "trainer.max_steps=50"),
                   run_dir=tmp_path)
    with pytest.raises(UserError, match="Training diverged"):
        run(cfg)
    text = (tmp_path / "status.json").read_text()
    status = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert status["status"] == "diverged" and status["metrics"]["global_step"] < 50
    assert status["metrics"]["loss/d"] in ("NaN", "Infinity", "-Infinity")
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):
        weights = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()), ckpt.name


@pytest.mark.slow
def test_runs_started_together_with_one_folder_get_a_folder_each(mnist_root, tmp_path):
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    command = [sys.executable, str(ROOT / "train.py"), *quick("trainer.max_steps=2"), f"hydra.run.dir={tmp_path / 'same'}"]
    procs = [subprocess.Popen([*command, f"seed={seed}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2, 3)]
    assert all(p.wait(timeout=300) == 0 for p in procs), [p.stderr.read()[-2000:] for p in procs]
    folders = sorted(p.parent for p in tmp_path.glob("same*/.hydra"))
    assert [f.name for f in folders] == ["same", "same_1", "same_2"]
    assert sorted(yaml.safe_load((f / ".hydra" / "config.yaml").read_text())["seed"] for f in folders) == [1, 2, 3]
    assert all(len(list(f.glob("events.out.tfevents.*[0-9]"))) == 1 for f in folders)  # one run's events in each


def test_a_refused_run_leaves_no_checkpoint_and_says_failed(mnist_root, tmp_path):
    result = run_cli(*quick("data.batch_size=60001"), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0 and "more than the dataset" in result.stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_a_resume_applies_new_optimizer_values_and_refuses_another_model(short_run, tmp_path, caplog):
    run_dir, _ = short_run
    with caplog.at_level("INFO", logger="gan.run.checkpoints.resume"):
        fit(make_cfg(*quick("trainer.max_steps=15", "optimizer.lr=1e-4", f"ckpt_path={run_dir}"), run_dir=tmp_path / "a"))
    states = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"]
    assert [s["param_groups"][0]["lr"] for s in states] == [1e-4, 1e-4]  # the rate this config asked for
    assert any("optimizer.lr 0.0002 -> 0.0001" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match=r"changes them: .*model.latent_dim=64 \(the checkpoint has 100\)"):
        fit(make_cfg(*quick("model.latent_dim=64", f"ckpt_path={run_dir}"), run_dir=tmp_path / "b"))
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_the_ending_gives_scores_with_their_direction_and_the_best_checkpoint(tmp_path):
    from gan.training.ending import ending

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best_fid.ckpt").touch()
    text = ending(str(tmp_path), "completed", {"global_step": 30000, "loss/d": 0.615, "metrics/fid": 58.31,
                                                "metrics/is": 8.12, "metrics/recall": float("nan")}, 573.2)
    assert text.startswith("Run completed at iteration 30000 after 9 min 33 s.")
    assert "fid 58.31 ↓, is 8.12 ↑" in text and "recall" not in text  # a score that is not a number is left out
    assert f"best checkpoint: {tmp_path / 'checkpoints' / 'best_fid.ckpt'}" in text
