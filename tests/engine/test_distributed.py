"""Several processes (issue 12) on this CPU: Lightning's DDP over gloo, two processes of
`python train.py trainer=ddp trainer.accelerator=cpu trainer.devices=2`, against one process on
the same global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from gan.errors import UserError
from gan.run.signals import PREEMPT
from gan.training.schema import validate
from tests.helpers import DATA_ROOT, ROOT, SMALL_R3GAN, SMALL_RESNET, events, make_cfg, quick

pytestmark = pytest.mark.usefixtures("mnist_root")

# BatchNorm-free networks, so that one process on the global batch and two on its halves agree;
# SGD, because Adam turns the last-bit differences of a mean over two halves (against one mean)
# into whole learning-rate steps wherever a gradient is near zero (m / sqrt(v) is its sign), so
# Adam runs agree only to ~lr after 20 iterations, which would hide a real mismatch.
SHORT = ("optimizer=sgd", "trainer=ddp", "trainer.accelerator=cpu", "trainer.max_steps=20", "trainer.log_every_n_steps=5",
         "sample_every=10", "eval_every=0", "callbacks.checkpoint.every_n_train_steps=10",
         "callbacks.progress_bar.refresh_rate=0", "data.batch_size=32", "model.generator.batch_norm=false")
NORM_FREE = SHORT[:-1]  # for networks that have no normalisation to switch off (R3GAN)
RECIPES = {
    "seed": (),
    # lr 1e-3: at SGD's 1e-2 the conditional GAN amplifies a mean's last bits chaotically (6e-4 apart by iteration 10
    # on torch 2.14); at 1e-3 the two runs agree to 2e-7 after 20 iterations, so a real mismatch still shows
    "conditional": ("model.conditional=true", "optimizer.lr=1e-3"),
    "wgan_gp": ("loss=wgan_gp", "gan.n_critic=2", "optimizer.lr=1e-4"),  # the paper's lr; 1e-2 makes the critic blow up
    # each process augments its slice with its rows of the global draws; ADA's counts are summed over the processes
    # at 1e-2 its last-bit differences grow to 3e-5 by iteration 20, at 1e-3 to 3e-6 (torch 2.14); at 3e-4 they stay
    # below 1e-7, where one wrong draw of a process would still move the weights by ~lr * grad
    "diffaug": ("augment=diffaug", "optimizer.lr=3e-4"),
    "ada": ("augment=ada", "augment.kimg=0.5"),
    "resnet": (*SMALL_RESNET, "optimizer.lr=1e-3"),  # G without BatchNorm, as every recipe here
    "r3gan": (*SMALL_R3GAN, "optimizer.lr=1e-3"),  # G's step on its own real batch, lazy R1 + R2, the EMA warm-up
}
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                   "GROUP_RANK", "PL_GLOBAL_SEED", "OMP_NUM_THREADS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python train.py ARGS` with no distributed or SLURM variables inherited, on a fresh port."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV and not k.startswith("SLURM_")}
    env.update(GAN_DATA_DIR=DATA_ROOT, MASTER_PORT=str(free_port()))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def the_run(cwd: Path) -> Path:
    [run] = [p.parent for p in (cwd / "outputs").glob("*/*/.hydra")]
    return run


def state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=1e-5, atol=1e-6), key


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, int], Path]:
    """Each recipe for 20 iterations on 2 processes and on 1 (the seed recipe's checkpoints at
    10 also serve the resume tests)."""
    folders = {}
    for recipe, overrides in RECIPES.items():
        for devices in (2, 1):
            cwd = tmp_path_factory.mktemp(f"{recipe}-{devices}")
            done = train(cwd, *(NORM_FREE if recipe == "r3gan" else SHORT), f"trainer.devices={devices}", *overrides)
            assert done.returncode == 0, done.stderr[-3000:]
            folders[recipe, devices] = the_run(cwd)
    return folders


@pytest.mark.slow
def test_two_processes_write_one_run_folder_and_end_with_identical_replicas(runs):
    run = runs["seed", 2]
    assert len(list(run.glob("events.out.tfevents.*[0-9]"))) == 1  # one writer: rank zero ...
    assert len(list(run.glob("events.out.tfevents.*.session_end"))) == 1  # ... which also ends the HParams session
    assert len(list((run / ".hydra").glob("config.yaml"))) == 1
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20
    assert sorted(p.name for p in (run / "images").iterdir()) == ["000010.png", "000020.png"]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["processes"] == 2
    assert status["replicas_identical"] is True  # every rank's G and D gathered and compared at the end
    assert [e.step for e in events(run).Scalars("loss/d")] == [5, 10, 15, 20]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_two_processes_train_what_one_trains_on_the_same_global_batch(runs, recipe):
    assert_close(state(runs[recipe, 2] / "checkpoints" / "last.ckpt"), state(runs[recipe, 1] / "checkpoints" / "last.ckpt"))
    if recipe == "ada":  # p moved, and by the same steps on 2 processes as on 1; the counts are global, as saved
        p = [[e.value for e in events(runs["ada", n]).Scalars("train/aug_p")] for n in (2, 1)]
        assert p[0] == p[1] and len(set(p[0])) > 1
        mid = [state(runs["ada", n] / "checkpoints" / "step_000010.ckpt")["augment.signs"] for n in (2, 1)]
        assert torch.equal(mid[0], mid[1]) and mid[0][1] == 2 * 32  # iterations 9 and 10 of the global batch


@pytest.mark.slow
@pytest.mark.parametrize("saved, resumed", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_number_of_processes(runs, tmp_path, saved, resumed):
    ckpt = runs["seed", saved] / "checkpoints" / "step_000010.ckpt"
    done = train(tmp_path, *SHORT, f"trainer.devices={resumed}", f"ckpt_path={ckpt}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_close(state(the_run(tmp_path) / "checkpoints" / "last.ckpt"), state(runs["seed", 1] / "checkpoints" / "last.ckpt"))


@pytest.mark.parametrize("overrides, message", [
    (("trainer=ddp", "trainer.devices=3"), "`data.batch_size=32` is the global batch, split evenly among "
                                           "trainer.devices x trainer.num_nodes = 3 processes: use a multiple of 3"),
    (("trainer=ddp", "trainer.accelerator=cpu", "trainer.sync_batchnorm=true"), "`trainer.sync_batchnorm=true` needs CUDA"),
    (("trainer=cpu", "trainer.devices=2"), "`trainer.devices=2` x `trainer.num_nodes=1` needs trainer=ddp"),
])
def test_distributed_keys_that_cannot_work_are_refused_in_one_paragraph(overrides, message):
    with pytest.raises(UserError, match="Invalid config") as refused:
        validate(make_cfg(*overrides))
    assert message in str(refused.value)


def test_a_sweep_of_ddp_jobs_on_a_launcher_that_cannot_start_their_processes_is_refused(tmp_path):
    done = train(tmp_path, "-m", *SHORT, "trainer.devices=2", "seed=1,2", "hydra/launcher=joblib")
    assert done.returncode == 1
    assert "needs hydra/launcher=slurm" in done.stderr and "starts the whole sweep again" in done.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("status.json"))


def test_two_processes_needing_the_feature_classifier_train_it_once(tmp_path):
    """The classifier cache is locked while a process trains or loads: a second process waits,
    then loads what the first saved instead of training its own."""
    from gan.cache import locked, store
    from gan.metrics.extractor import Classifier, Recipe, cache_key

    path = tmp_path / f"{cache_key('Tiny', (1, 28, 28), 10, Recipe(epochs=1))}.pt"
    code = ("import sys, torch; from gan.metrics.extractor import load_or_train, Recipe; "
            "x, y = torch.zeros(8, 1, 28, 28), torch.arange(8) % 10; "
            "net, acc = load_or_train('Tiny', (x, y), (x, y), 10, Recipe(epochs=1)); print('accuracy', acc)")
    env = {**os.environ, "GAN_CACHE_DIR": str(tmp_path)}
    with locked(path):  # this process "trains" meanwhile
        other = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            other.wait(timeout=8)  # blocked on the lock (it would have trained and finished well within this)
        store({"state_dict": Classifier((1, 28, 28), 10).state_dict(), "test_accuracy": 0.123}, path)
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err[-2000:]
    assert "accuracy 0.123" in out and "Training the Tiny" not in err  # loaded what the first process saved


@pytest.mark.slow
def test_processes_started_by_an_outside_launcher_share_the_folder_they_are_given(tmp_path):
    """As torchrun (or srun) starts them: two train.py processes that know their rank from the
    environment. Rank zero claims the named folder; rank one joins it and writes only its log."""
    port, folder = free_port(), tmp_path / "outputs" / "job-7"
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV and not k.startswith("SLURM_")}
    env.update(GAN_DATA_DIR=DATA_ROOT, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", GROUP_RANK="0",
               LOCAL_WORLD_SIZE="2", TORCHELASTIC_RUN_ID="test")
    args = [sys.executable, str(ROOT / "train.py"), *SHORT, "trainer.devices=2", "trainer.max_steps=10"]
    procs = [subprocess.Popen([*args, f"hydra.run.dir={folder}"], cwd=tmp_path, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["job-7"]
    assert (folder / ".hydra" / "config.yaml").exists() and (folder / "train_rank1.log").exists()
    assert json.loads((folder / "status.json").read_text())["replicas_identical"] is True

    alone = subprocess.run([*args], cwd=tmp_path, env={**env, "RANK": "1", "LOCAL_RANK": "1"}, capture_output=True, text=True,
                           timeout=120)
    assert alone.returncode == 1 and "must share one run folder, so give it on the command line" in alone.stderr


class SignalAt(pl.Callback):
    """Sends this process the cluster's preemption signal after iteration `step` (a chunk ends there)."""

    def __init__(self, step: int):
        self.every_n_steps = step  # so that a training step ends on it (gan/engine/chunks.py)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.every_n_steps:
            os.kill(os.getpid(), PREEMPT)


def test_a_preempted_slurm_job_stops_cleanly_is_requeued_once_and_continues_in_its_folder(tmp_path, monkeypatch):
    from gan.training.job import run

    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    requeues = []  # stands for submitit's checkpoint-and-requeue handler, installed before the job starts
    previous = signal.signal(PREEMPT, lambda signum, frame: requeues.append(signum))
    try:
        cfg = make_cfg(*quick("trainer.max_steps=30", "+callbacks.preempt._target_=tests.engine.test_distributed.SignalAt",
                              "+callbacks.preempt.step=12"), run_dir=tmp_path / "job")
        with pytest.raises(SystemExit) as stopped:
            run(cfg)
        assert stopped.value.code == 128 + PREEMPT and requeues == [PREEMPT]  # requeued once, by the handler before
        status = json.loads((tmp_path / "job" / "status.json").read_text())
        assert status["status"] == "interrupted" and status["slurm_job"] == "4242"
        assert torch.load(tmp_path / "job" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12

        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued job: same id, same folder, same command
        cfg = make_cfg(*quick("trainer.max_steps=30"), run_dir=tmp_path / "job")
        run(cfg)
    finally:
        signal.signal(PREEMPT, previous)
    assert json.loads((tmp_path / "job" / "status.json").read_text())["status"] == "completed"
    straight = tmp_path / "straight"
    run(make_cfg(*quick("trainer.max_steps=30"), run_dir=straight))
    a, b = (state(d / "checkpoints" / "last.ckpt") for d in (tmp_path / "job", straight))
    assert all(torch.equal(a[k], b[k]) for k in a)  # continued exactly where it stopped
    assert [e.step for e in events(tmp_path / "job").Scalars("loss/d")][-1] == 30  # its curves go on in the folder


def test_each_process_draws_its_slice_of_the_global_batch_and_noise():
    from gan.data import StepBatches
    from gan.engine.draws import IterationDraws
    from gan.networks import MLPGenerator

    net = MLPGenerator(latent_dim=8, hidden_dims=[16], out_shape=(1, 4, 4), conditional=True, num_classes=10)
    whole = IterationDraws(net, 2, 12, seed=5, device=torch.device("cpu"), penalty=True)(7)
    parts = [IterationDraws(net, 2, 12, seed=5, device=torch.device("cpu"), rank=r, world=3, penalty=True)(7) for r in range(3)]
    assert torch.equal(torch.cat([p.d_noise for p in parts], 1), whole.d_noise)
    assert torch.equal(torch.cat([p.g_noise for p in parts]), whole.g_noise)
    assert torch.equal(torch.cat([p.g_labels for p in parts]), whole.g_labels)
    assert torch.equal(torch.cat([p.mix for p in parts], 1), whole.mix)
    assert not torch.equal(IterationDraws(net, 2, 12, seed=5, device=torch.device("cpu"))(8).g_noise, whole.g_noise)

    batches = [next(iter(StepBatches(1000, 12, 2, "with_replacement", 5, rank=r, world=3))) for r in range(3)]
    assert torch.equal(torch.cat(batches, 2), next(iter(StepBatches(1000, 12, 2, "with_replacement", 5))))
    with pytest.raises(UserError, match="data.batch_size=12 is the global batch, split evenly among the run's 5"):
        StepBatches(1000, 12, 2, "with_replacement", 5, world=5)


@pytest.mark.slow
def test_two_processes_evaluate_once_and_agree_on_the_scores(mnist_classifier, tmp_path):
    done = train(tmp_path, *SHORT, "trainer.devices=2", "eval_every=10", "callbacks.metrics.n=500")
    assert done.returncode == 0, done.stderr[-3000:]
    run = the_run(tmp_path)
    fids = [e.step for e in events(run).Scalars("metrics/classifier500_test/fid")]
    assert fids == [10, 20] and (run / "checkpoints" / "best_fid.ckpt").exists()
    status = json.loads((run / "status.json").read_text())
    assert status["metrics"]["metrics/fid"] > 0 and status["metrics_protocol"] == "classifier500_test"


@pytest.mark.slow
def test_the_processes_lightning_starts_die_with_a_killed_rank_zero(tmp_path):
    """SIGKILL of rank zero mid-run: the process Lightning's launcher started would wait in a
    collective until the process group's timeout; it dies with rank zero instead."""
    import time

    from tests.helpers import children, killed_with_survivors

    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV and not k.startswith("SLURM_")}
    env.update(GAN_DATA_DIR=DATA_ROOT, MASTER_PORT=str(free_port()))
    folder = tmp_path / "run"
    rank0 = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *SHORT, "trainer.devices=2", "trainer.max_steps=100000",
                              f"hydra.run.dir={folder}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (folder / "checkpoints" / "step_000010.ckpt").exists():  # both processes are training
        assert time.monotonic() < deadline and rank0.poll() is None, "the run never started training"
        time.sleep(0.2)
    assert children(rank0.pid)
    assert not killed_with_survivors(rank0), "a process of the run outlived its rank zero"
