"""What the tests share: the real configs (conf/) composed as `python train.py` composes them,
the CLI in a subprocess, short runs, tiny datasets on disk, and readers of what a run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan.training import resolvers

resolvers.register()  # as train.py does, before composing

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# CI sets GAN_DATA_DIR (../shared/data); elsewhere MNIST is downloaded into data/ on first use.
DATA_ROOT = os.environ.get("GAN_DATA_DIR", str(ROOT / "data"))
CONDITIONAL_CKPT = ROOT / "tests" / "fixtures" / "conditional_ema_f099e64.ckpt"  # an MLP cGAN with an EMA, written by the project
PADDED_MNIST = ("data.pad=2", "data.image_shape=[1,32,32]")  # the residual models' smallest preset is 32 px
# The residual models at CPU-test size: SNGAN's ResNet with the hinge loss; R3GAN with its loss, lazy penalties and EMA warm-up.
SMALL_RESNET = ("model=resnet", *PADDED_MNIST, "model.width=4", "loss=hinge", "gan.d_update=joint")
SMALL_R3GAN = ("model=r3gan", *PADDED_MNIST, "model.widths=[8,8,8,8]", "model.cardinalities=[2,2,2,2]", "model.blocks=[1,1,1,1]",
               "loss=rpgan", "loss.penalty_every=4", "gan.ema_kimg=0.5", "gan.ema_rampup=0.05")


def make_cfg(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    """The composed training config, as train.py would get it (without the hydra node)."""
    extra = [f"run_dir={run_dir}"] if run_dir is not None else ["run_dir=/nonexistent"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"data.root={DATA_ROOT}", *extra, *overrides])


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, from `cwd` (so outputs/ lands there)."""
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    env.pop("HYDRA_FULL_ERROR", None)  # errors as users see them
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def quick(*overrides: str) -> list[str]:
    """Overrides for a few-second CPU run with every part switched on."""
    return ["trainer=cpu", "eval_every=0", "trainer.max_steps=12", "trainer.log_every_n_steps=3", "sample_every=5",
            "callbacks.checkpoint.every_n_train_steps=6", "callbacks.progress_bar.refresh_rate=0", *overrides]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def generator_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("generator.")}


def optimizer_steps(ckpt: Path) -> list[int]:
    """Adam's step count of G's and D's optimizer, from a checkpoint."""
    states = torch.load(ckpt, weights_only=True)["optimizer_states"]
    return [int(next(iter(s["state"].values()))["step"]) for s in states]


def write_idx(folder: Path, n: int, split: str) -> None:
    """A tiny dataset in the original idx format, as torchvision's MNIST-style classes read it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], ">i4").tobytes() + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels.tobytes())


def hparams_dashboard(logdir: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """What TensorBoard's HParams table shows for `tensorboard --logdir <logdir>`, computed by
    TensorBoard's own backend: the hyperparameter columns ticked by default (the dashboard sorts
    those whose values differ first and ticks five), the metric columns ticked (the first five)
    and each row's name (Trial ID) with its Status (`STATUS_SUCCESS`, ...)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    runs = plugin_event_multiplexer.EventMultiplexer()
    runs.AddRunsFromDirectory(str(logdir))
    runs.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=runs,
                               data_provider=data_provider.MultiplexerDataProvider(runs, str(logdir)))
    backend, request = backend_context.Context(tb), context.RequestContext()
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest()).run()
    columns = [h.name for h in sorted(experiment.hparam_infos, key=lambda h: not h.differs)][:5]
    metrics = [m.name.tag for m in experiment.metric_infos][:5]
    groups = list_session_groups.Handler(request, backend, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, allowed_statuses=list(api_pb2.Status.values()))).run()
    return columns, metrics, {g.name: api_pb2.Status.Name(g.sessions[0].status) for g in groups.session_groups}


def write_image_folder(root: Path, per_class: int = 40, classes: tuple[str, ...] = ("red", "green", "blue")) -> dict[str, int]:
    """A folder as users bring them: one sub-folder per class (nested one level deeper for half of
    the files), images of mixed sizes, formats (PNG, JPEG, WebP) and modes (RGB, grey, RGBA, palette,
    16-bit grey), plus files that are not images or are broken. Class k is drawn mostly in colour
    channel k, so a classifier can tell the classes apart. Returns counts of what was written."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(40, 40), (64, 48), (30, 50), (100, 70)]
    formats = [("RGB", ".png"), ("RGB", ".jpg"), ("RGB", ".webp"), ("L", ".png"), ("RGBA", ".png"), ("P", ".png"),
               ("I;16", ".png"), ("L", ".jpg")]
    grey = 0
    for k, name in enumerate(classes):
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            pixels = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
            pixels[y : y + height // 2, x : x + width // 2, k] = 255  # a bright block in the class's channel
            mode, suffix = formats[i % len(formats)]
            image = Image.fromarray(pixels, "RGB")
            if mode in ("L", "I;16"):
                grey += 1
                image = image.convert("L")
                if mode == "I;16":
                    image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
            elif mode != "RGB":
                image = image.convert(mode)
            folder = root / name / ("deeper" if i % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:03d}{suffix}")
    (root / classes[0] / "truncated.png").write_bytes((root / classes[0] / "000.png").read_bytes()[:200])
    (root / classes[1] / "not_an_image.jpg").write_text("hello")
    (root / classes[2] / "empty.webp").write_bytes(b"")
    (root / classes[0] / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "thumb.png").write_bytes((root / classes[0] / "000.png").read_bytes())
    return {"images": per_class * len(classes), "broken": 3, "grey": grey, "other": 1}


def write_fake_cifar10(root: Path, train_per_batch: int = 100, test: int = 200) -> None:
    """CIFAR-10's python version in miniature (cifar-10-batches-py/ with its six pickled batches),
    class k drawn mostly in one colour channel with a class-dependent stripe, so it can be learnt."""
    import pickle

    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, k % 3, :, 3 * k : 3 * k + 3] = 255
        return {"data": images.reshape(n, 3072), "labels": labels.tolist(), "batch_label": "fake"}

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(batch(test if name == "test_batch" else train_per_batch), f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"]}, f, protocol=2)


def children(pid: int) -> set[int]:
    """Every descendant of `pid` (read from /proc)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def killed_with_survivors(process: subprocess.Popen, descendants: set[int] | None = None, limit_s: float = 10) -> set[int]:
    """SIGKILL `process`, then the PIDs of its descendants (as they were just before) still alive after `limit_s`."""
    import time

    descendants = children(process.pid) if descendants is None else descendants
    process.kill()
    process.wait()
    deadline = time.monotonic() + limit_s
    while any(alive(p) for p in descendants) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p for p in descendants if alive(p)}


def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Inception-v3 weights in the layout of pytorch-fid's (and torch-fidelity's) file, random but
    fixed: the real file cannot be fetched here. torchvision's network with PyTorch's default
    init, its convolutions scaled to He's variance so the features neither vanish nor explode."""
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    state = {k: v * 6**0.5 if k.endswith("conv.weight") else v for k, v in net.state_dict().items()}
    torch.save(state, path)
    return path


class PostgresServer:
    """A PostgreSQL server (Debian's package, installed by .ci/run) on 127.0.0.1 at a free port,
    with its own data folder in /tmp owned by the server's user (PostgreSQL refuses to run as root),
    trust authentication for the user `gan`; `url` for SQLAlchemy; `stop()` ends it."""

    def __init__(self):
        import shutil
        import tempfile
        import time

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
        self.bin = found[-1].parent
        self.folder = Path(tempfile.mkdtemp(prefix="gan-postgres-"))
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.folder, "postgres")
        subprocess.run([*self.as_owner, str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-A", "trust", "-U",
                        "gan", "--no-sync"], check=True, capture_output=True)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([*self.as_owner, str(self.bin / "postgres"), "-D", str(self.folder / "data"),
                                         "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.folder), "-F"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"postgresql+psycopg2://gan@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        import shutil
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the postmaster and its backends (runuser's session)
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
