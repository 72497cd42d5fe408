"""MLflow and Weights & Biases as the run's loggers, against real components: an `mlflow server`
(SQLite backend, its own artifact folder, a free port on 127.0.0.1) started and stopped here, the
local SQLite store, and W&B's offline run files read back with W&B's own protobuf records."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gan.run import trackers
from gan.run.trackers import Unsent, server_problems
from tests.helpers import events, quick, run_cli

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.usefixtures("mnist_root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with its own SQLite store and artifact folder."""

    def __init__(self, folder: Path):
        self.port, self.folder = free_port(), folder
        self.uri = f"http://127.0.0.1:{self.port}"
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--artifacts-destination", str(folder / "artifacts")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(self.uri + "/health", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)  # the server and its uvicorn worker
            self.process.wait()

    def client(self):
        return mlflow.MlflowClient(self.uri)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield running
    running.stop()


def runs(client, experiment: str = "gan") -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def image_steps(client, run_id: str, tag: str) -> list[int]:
    """The steps of image `tag` logged with MlflowClient.log_image(key=, step=) (files images/<tag>+step+<n>+...png)."""
    names = [Path(a.path).name for a in client.list_artifacts(run_id, "images")]
    return sorted(int(n.split("+")[2]) for n in names if n.startswith(f"{tag}+") and n.endswith(".png"))


def test_an_mlflow_run_holds_the_config_every_scalar_the_grids_and_the_status_as_tensorboard_does(tmp_path, server):
    result = run_cli(*quick("logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={server.uri}", "augment=diffaug",
                            "logger.mlflow.experiment_name=same"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = (tmp_path / "outputs").glob("*/*/status.json")
    run_dir = run_dir.parent
    client = server.client()
    [run] = runs(client, "same")
    assert json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"] == run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["gan.status"] == "completed"
    assert run.data.tags["gan.run_folder"] == str(run_dir.resolve()) and "augment=diffaug" in run.data.tags["gan.overrides"]
    # the parameters: every key of the flattened config (TensorBoard's hparams.yaml) but the paths in the run
    # folder (which differ in every run: a tag names the folder), and the group choices
    config = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    inside = {key for key, value in config.items() if str(value).startswith(str(run_dir))}
    assert {"run_dir", "callbacks.last.dirpath", "logger.tensorboard.save_dir"} <= inside
    assert all(run.data.params[key] == str(value)[:250] for key, value in config.items() if key not in inside)
    assert not inside & set(run.data.params)
    assert run.data.params["augment"] == "diffaug" and run.data.params["model"] == "mlp"
    # every scalar, at the same steps and with the same values as TensorBoard's
    board = events(run_dir)
    tags = board.Tags()["scalars"]
    assert {"loss/d", "loss/g", "train/d_real"} <= set(tags)
    for tag in tags:
        tb = [(e.step, pytest.approx(e.value, rel=1e-6)) for e in board.Scalars(tag)]
        ml = [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, tag), key=lambda m: m.step)]
        assert ml == tb, tag
    # the grids (and what D sees) at their iterations, as in TensorBoard
    for tag in ("samples", "reals_seen"):
        assert image_steps(client, run.info.run_id, tag) == [e.step for e in board.Images(tag)], tag
    assert "config.md" in [a.path for a in client.list_artifacts(run.info.run_id)]
    # the ending links the run once (MLflow's own link at each status change is silenced), TensorBoard beside it
    console = result.stdout + result.stderr
    link = f"{server.uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"look at them:    tensorboard --logdir {run_dir}" in console and f"look at them:    {link}" in console
    assert "View run" not in console


def test_a_run_goes_on_when_the_server_dies_and_says_at_its_end_what_was_not_sent(tmp_path):
    server = Server(tmp_path / "server")
    env = {**os.environ, "GAN_DATA_DIR": os.environ.get("GAN_DATA_DIR", "")}
    command = [sys.executable, str(Path(__file__).parents[2] / "train.py"),
               *quick("logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={server.uri}", "trainer.max_steps=400",
                      "sample_every=40", "trainer.log_every_n_steps=10", "callbacks.checkpoint.every_n_train_steps=200")]
    try:
        job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while not list((tmp_path / "outputs").glob("*/*/images/000040.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # mid-run: the first grid has been sent
        out, _ = job.communicate(timeout=600)
    finally:
        server.stop()
    assert job.returncode == 0, out[-3000:]
    [status] = (tmp_path / "outputs").glob("*/*/status.json")
    assert json.loads(status.read_text())["status"] == "completed"
    assert [e.step for e in events(status.parent).Scalars("loss/g")][-1] == 400  # the run folder has it all
    assert "did not take the" in out and "did not receive:" in out and "metric batches" in out and "images" in out


def test_a_resume_continues_the_same_mlflow_run_in_the_local_store_and_the_same_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = run_cli(*quick("logger=[mlflow,wandb]", "trainer.max_steps=6"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [folder] = [p.parent for p in (tmp_path / "outputs").glob("*/*/status.json")]
    resumed = run_cli(*quick("logger=[mlflow,wandb]", f"ckpt_path={folder}"), cwd=tmp_path)  # on to 12
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "MLflow: continuing run" in resumed.stdout + resumed.stderr
    assert "look at them:    tensorboard" not in resumed.stdout + resumed.stderr  # no events written: no such line
    assert f"look at them:    mlflow ui --backend-store-uri sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}" in \
        resumed.stdout + resumed.stderr
    [second] = [p.parent for p in (tmp_path / "outputs").glob("*/*/status.json") if p.parent != folder]
    kept = [json.loads((f / "trackers.json").read_text()) for f in (folder, second)]
    ids = [entry["mlflow"]["run_id"] for entry in kept]
    assert ids[0] == ids[1] and kept[0]["wandb"]["id"] == kept[1]["wandb"]["id"]
    assert list(second.glob(f"wandb/offline-run-*-{kept[0]['wandb']['id']}"))  # the W&B run goes on under its id
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = runs(client)
    assert run.info.run_id == ids[0] and run.info.status == "FINISHED"
    assert run.data.tags["gan.resumed_in"] == str(second.resolve())
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "loss/g")})
    assert steps == [3, 6, 9, 12]
    assert (tmp_path / "outputs" / "mlartifacts").is_dir()  # the local store's artifacts beside it, not ./mlruns
    assert not (tmp_path / "mlruns").exists()


def test_gan_evaluate_adds_its_scores_and_closest_pairs_to_the_runs_mlflow_run(tmp_path, mnist_classifier, monkeypatch):
    from gan.evaluate import Args, evaluate

    result = run_cli(*quick("logger=mlflow"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [p.parent for p in (tmp_path / "outputs").glob("*/*/status.json")]
    monkeypatch.chdir(tmp_path)
    scores = evaluate(Args(ckpt=str(run_dir), n=60, memorisation=60))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = runs(client)
    for key, value in (("fid", scores["fid"]), ("floor_fid", scores["floor"]["fid"]),
                       ("memorisation_ratio", scores["memorisation"]["ratio"])):
        [metric] = client.get_metric_history(run.info.run_id, f"evaluate/classifier60_test/{key}")
        assert (metric.step, metric.value) == (12, pytest.approx(value, rel=1e-6)), key
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluations")] == [
        "evaluations/nearest_last_classifier60_test.png"]
    assert run.info.status == "FINISHED"  # the finished run stays finished
    evaluate(Args(ckpt=str(run_dir), n=60, memorisation=0, track=False))
    assert len(client.get_metric_history(run.info.run_id, "evaluate/classifier60_test/fid")) == 1


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (`run-<id>.wandb`): W&B's protobuf Records in the LevelDB log
    format (32 KiB blocks; each chunk: CRC, length, type: full, first, middle, last) after a 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, records, pending = path.read_bytes(), 32768, 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_a_wandb_offline_run_holds_the_history_the_grids_the_config_and_the_final_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_cli(*quick("logger=[tensorboard,wandb]"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [p.parent for p in (tmp_path / "outputs").glob("*/*/status.json")]
    entry = json.loads((run_dir / "trackers.json").read_text())["wandb"]
    assert entry["mode"] == "offline"
    [offline] = (run_dir / "wandb").glob(f"offline-run-*-{entry['id']}")
    records = wandb_records(offline / f"run-{entry['id']}.wandb")
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
    board = events(run_dir)
    for tag in ("loss/d", "loss/g"):  # every scalar at its iteration, as TensorBoard has it
        logged = [(row["trainer/global_step"], pytest.approx(row[tag], rel=1e-6)) for row in rows if tag in row]
        assert logged == [(e.step, e.value) for e in board.Scalars(tag)], tag
    grids = [row["trainer/global_step"] for row in rows if "samples/_type" in row]
    assert grids == [e.step for e in board.Images("samples")]
    assert all((offline / "files" / name).exists() for row in rows if "samples/filenames" in row
               for name in row["samples/filenames"])
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["model.latent_dim"] == 100 and config["trainer.max_steps"] == 12 and config["model"] == "mlp"
    assert config["gan.run_folder"] == str(run_dir.resolve()) and "run_dir" not in config
    summary = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for r in records
               if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert summary["gan/status"] == "completed"
    assert summary["loss/g"] == pytest.approx(board.Scalars("loss/g")[-1].value, rel=1e-6)
    [exit_record] = [r for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit.exit_code == 0
    assert (offline / "files" / "config.md").exists()
    assert f"look at them:    wandb sync {offline}  (W&B run {entry['id']}, kept offline)" in result.stdout + result.stderr


def test_an_unreachable_server_a_missing_package_and_wandb_online_without_a_key_are_refused_before_training(
        tmp_path, monkeypatch):
    port = free_port()
    result = run_cli(*quick("logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"), cwd=tmp_path)
    assert result.returncode == 1
    assert f"`logger.mlflow.tracking_uri=http://127.0.0.1:{port}`: the MLflow server does not answer" in result.stderr
    assert not list(tmp_path.glob("outputs/*/*"))  # refused before the run folder was made

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("mlflow", "wandb") else real(name, *a))
    missing = server_problems({"logger": {"mlflow": {"_target_": "gan.run.trackers.MLflowTracker"},
                                          "wandb": {"_target_": "gan.run.trackers.WandbTracker"}}})
    assert missing == ['`logger.mlflow` needs MLflow, which is not installed: pip install -e ".[mlflow]"',
                       '`logger.wandb` needs Weights & Biases, which is not installed: pip install -e ".[wandb]"']
    monkeypatch.setattr(importlib.util, "find_spec", real)

    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    [online] = server_problems({"logger": {"wandb": {"_target_": "gan.run.trackers.WandbTracker", "mode": "online"}}})
    assert "`logger.wandb.mode=online`: no W&B API key" in online
    assert server_problems({"logger": {"wandb": {"_target_": "gan.run.trackers.WandbTracker", "mode": "auto"}}}) == []
    assert trackers.wandb_mode("auto") == "offline"


def test_a_failing_tracker_is_counted_paused_and_reported_not_raised(monkeypatch, caplog):
    calls = []

    def refuse(*args):
        calls.append(args)
        raise ConnectionError("refused")

    clock = [100.0]
    monkeypatch.setattr(trackers.time, "monotonic", lambda: clock[0])
    unsent = Unsent("MLflow (test)")
    assert unsent.call("metric batches", lambda: 7) == 7
    assert unsent.call("metric batches", refuse, 1) is None
    assert unsent.call("images", refuse, 2) is None  # paused: not even tried
    clock[0] += trackers.PAUSE_AFTER_FAILURE + 1
    assert unsent.call("images", refuse, 3) is None  # tried again after the pause
    assert calls == [(1,), (3,)]
    assert [r.message.count("did not take") for r in caplog.records] == [1]  # warned once
    assert unsent.report().startswith("MLflow (test) did not receive: 1 metric batches, 2 images (first error: "
                                      "ConnectionError: refused)")


@pytest.mark.slow
def test_a_multirun_is_one_parent_run_and_one_wandb_group_with_its_jobs_and_the_ui_shows_them(tmp_path, server, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_cli("-m", *quick("logger=[mlflow,wandb]", f"logger.mlflow.tracking_uri={server.uri}",
                                  "logger.mlflow.experiment_name=multirun", "model.latent_dim=8,16"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = server.client()
    found = runs(client, "multirun")
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    [parent] = parents
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and parent.data.tags["gan.swept_keys"] == "model.latent_dim"
    assert parent.data.params == {"model.latent_dim": "8,16"}  # the parent holds the search space
    assert sorted(r.data.params["model.latent_dim"] for r in children) == ["16", "8"]
    differing = {key for key in children[0].data.params if children[0].data.params[key] != children[1].data.params.get(key)}
    # what the tracker's comparison shows first: the swept key (and the generator's copy of it), no folder paths
    assert differing == {"model.latent_dim", "model.generator.latent_dim"}
    assert sorted(r.info.run_name for r in children) == ["0_latent_dim-8", "1_latent_dim-16"]
    assert parent.data.tags["gan.sweep"].startswith("multirun/") and parent.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in children)
    assert f"look at them:    {server.uri}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}" in \
        result.stdout + result.stderr  # the sweep's ending links its parent run
    groups = {record.run.run_group for path in tmp_path.glob("outputs/multirun/*/*/*/wandb/offline-run-*/run-*.wandb")
              for record in wandb_records(path) if record.WhichOneof("record_type") == "run"}
    assert groups == {parent.data.tags["gan.sweep"]}  # both jobs' W&B runs in the sweep's group
    # the UI, as a person opens it: the experiment's page lists the sweep and its jobs
    experiment = client.get_experiment_by_name("multirun").experiment_id
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                          "--dump-dom", f"{server.uri}/#/experiments/{experiment}/runs"], capture_output=True, text=True,
                         timeout=120).stdout
    assert parent.info.run_name in dom and "matching runs" in dom  # the sweep's row (its jobs nested under it)


@pytest.mark.slow
def test_an_optuna_study_is_one_parent_run_with_each_trial_nested_and_the_pruned_one_marked(tmp_path, server):
    from tests.sweeps.test_sweeps import TINY, grid_search

    conf = grid_search(tmp_path / "conf", {"loss": "choice(nonsaturating, hinge, minimax)"},
                       "{_target_: optuna.pruners.ThresholdPruner, upper: 0.6}")  # prunes the non-saturating trial
    result = run_cli("--config-dir", conf, "hparams_search=grid", *TINY, "logger=mlflow",
                     f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.experiment_name=study", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = runs(server.client(), "study")
    [parent] = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_name == "grid" and parent.data.tags["gan.swept_keys"] == "loss"
    assert parent.data.params == {"loss": "choice(nonsaturating, hinge, minimax)"}
    children = {r.data.params["loss"]: r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["hinge", "minimax", "nonsaturating"]
    assert children["nonsaturating"].data.tags["gan.status"] == "pruned" and children["nonsaturating"].info.status == "KILLED"
    assert all(children[k].info.status == "FINISHED" for k in ("hinge", "minimax"))
