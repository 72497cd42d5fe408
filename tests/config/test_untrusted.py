"""Files from elsewhere are data, never a program (gan/config/untrusted.py): crafted checkpoints, hostile
image folders, sweep folders, weights files and output paths."""

from __future__ import annotations

import copy
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan.config.hydra_runtime import config_folders
from gan.config.untrusted import CONF, offered
from gan.errors import UserError
from gan.evaluate import Args as EvaluateArgs
from gan.evaluate import datamodule_of, evaluate
from gan.generate import Args as GenerateArgs
from gan.generate import write
from gan.module import GAN
from gan.networks import MLPGenerator
from gan.run.checkpoints.files import load_checkpoint, load_generator
from gan.run.checkpoints.saving import CheckpointContents
from gan.training.fit import fit
from tests.helpers import DATA_ROOT, ROOT, make_cfg, quick, run_cli


class Evil:
    """Unpickling this creates `marker`: what a payload hidden in a crafted file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TinyGenerator(MLPGenerator):
    """A network of the user's own, offered by their own config folder."""

    def __init__(self, latent_dim: int, out_shape: list[int]):
        super().__init__(latent_dim, [4], out_shape)


@pytest.fixture(scope="module")
def saved(mnist_root, tmp_path_factory) -> dict:
    """A checkpoint as train.py writes it (a 3-iteration run), loaded."""
    run_dir = tmp_path_factory.mktemp("run")
    fit(make_cfg(*quick("trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=0"), run_dir=run_dir))
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def payloads(marker: Path, folder: Path) -> dict[str, bytes]:
    """The bytes of a pickle, a .npy and a torch file that each create `marker` when loaded unsafely,
    and a hub repository and a module that create it when imported."""
    torch_file, numpy_file = io.BytesIO(), io.BytesIO()
    torch.save(Evil(marker), torch_file)
    np.save(numpy_file, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    (folder / "hub").mkdir(exist_ok=True)
    (folder / "hub" / "hubconf.py").write_text(f"import os\nos.system('touch {marker}')\ndef evil(): pass\n")
    (folder / "gan_evil_module.py").write_text(f"import os\nos.system('touch {marker}')\n")
    return {"torch": torch_file.getvalue(), "numpy": numpy_file.getvalue(), "pickle": pickle.dumps(Evil(marker))}


def resolved(c: dict, key: str, value) -> None:
    node = c
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value


# name -> (what the crafted config changes: (key, value(marker, payloads, folder)), the key and the target the refusal names)
GALLERY = {
    "torch.load with an embedded payload": (
        "model.generator", lambda m, p, f: {"_target_": "torch.load", "weights_only": False,
                                            "f": {"_target_": "io.BytesIO", "initial_bytes": p["torch"]}},
        "model.generator._target_", "torch.load"),
    "numpy.load with an embedded payload": (
        "data", lambda m, p, f: {"_target_": "numpy.load", "allow_pickle": True,
                                 "file": {"_target_": "io.BytesIO", "initial_bytes": p["numpy"]}},
        "data._target_", "numpy.load"),
    "pickle.loads through _args_": (
        "data", lambda m, p, f: {"_target_": "pickle.loads", "_args_": [p["pickle"]]}, "data._target_", "pickle.loads"),
    "a nested target in a project class's argument": (
        "model.generator.hidden_dims", lambda m, p, f: {"_target_": "torch.load", "weights_only": False,
                                                        "f": {"_target_": "io.BytesIO", "initial_bytes": p["torch"]}},
        "model.generator.hidden_dims._target_", "torch.load"),
    "_args_ on a project class": (
        "model.generator._args_", lambda m, p, f: [{"_target_": "os.system", "command": f"touch {m}"}],
        "model.generator._args_", "gan.networks.MLPGenerator"),
    "_partial_ on a project class": (
        "model.generator._partial_", lambda m, p, f: True, "model.generator._partial_", "gan.networks.MLPGenerator"),
    "an attribute path: torch.hub.load": (
        "model.generator", lambda m, p, f: {"_target_": "torch.hub.load", "repo_or_dir": str(f / "hub"), "model": "evil",
                                            "source": "local", "trust_repo": True},
        "model.generator._target_", "torch.hub.load"),
    "an attribute path: importlib.import_module": (
        "data", lambda m, p, f: {"_target_": "importlib.import_module", "name": "gan_evil_module"},
        "data._target_", "importlib.import_module"),
    "a project class with code for a value": (
        "model.generator.hidden_dims", lambda m, p, f: [f"__import__('os').system('touch {m}')"],
        "model.generator.hidden_dims", "gan.networks.MLPGenerator"),
    "a target in a group that is never rebuilt from the file": (
        "optimizer._target_", lambda m, p, f: "os.system", "optimizer._target_", "os.system"),
    "${oc.env:...} in the resolved config": (
        "data.root", lambda m, p, f: "${oc.env:HOME}", "data.root", "oc.env"),
    "a project resolver in the resolved config": (
        "model.generator.init", lambda m, p, f: f"${{unique_dir:{m}}}", "model.generator.init", "unique_dir"),
    "an old checkpoint (no resolved config) with a project resolver": (
        "old:model.generator.init", lambda m, p, f: f"${{unique_dir:{m}}}", "model.generator.init", "unique_dir"),
    "an old checkpoint with ${oc.env:...} in a network": (
        "old:model.generator.noise", lambda m, p, f: "${oc.env:HOME}", "model.generator.noise", "oc.env"),
}


@pytest.fixture(scope="module")
def gallery(saved, tmp_path_factory) -> dict[str, tuple[Path, Path, str, str]]:
    """name -> (crafted checkpoint, the marker its payload would create, key, target): each file
    holds plain data only, which `torch.load(weights_only=True)` accepts."""
    folder = tmp_path_factory.mktemp("gallery")
    made = {}
    for i, (name, (key, value, names_key, names_target)) in enumerate(GALLERY.items()):
        marker = folder / f"PWNED-{i}"
        checkpoint = copy.deepcopy(saved)
        if key.startswith("old:"):
            del checkpoint["resolved_config"]
            resolved(checkpoint["config"], key.removeprefix("old:"), value(marker, payloads(marker, folder), folder))
        else:
            resolved(checkpoint["resolved_config"], key, value(marker, payloads(marker, folder), folder))
        path = folder / f"crafted-{i}.ckpt"
        torch.save(checkpoint, path)
        torch.load(path, weights_only=True)  # plain data only
        made[name] = (path, marker, names_key, names_target)
    return made


def attempt(use: str, path: Path, tmp_path: Path):
    if use == "resume":
        return fit(make_cfg(*quick(f"ckpt_path={path}"), run_dir=tmp_path / "run"))
    if use == "evaluate":
        return evaluate(EvaluateArgs(ckpt=str(path), n=10))
    return write(GenerateArgs(ckpt=str(path), n=2, out=str(tmp_path / "x.png")))


@pytest.mark.parametrize("use", ["generate", "evaluate", "resume"])
@pytest.mark.parametrize("name", list(GALLERY))
def test_a_crafted_checkpoint_runs_nothing_and_is_refused_naming_the_key_and_the_target(name, use, gallery, tmp_path,
                                                                                       monkeypatch):
    path, marker, key, target = gallery[name]
    monkeypatch.syspath_prepend(str(path.parent))  # where gan_evil_module would be imported from
    with pytest.raises(UserError) as refused:
        attempt(use, path, tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and key in message and target in message, message
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["gan.generate", "gan.evaluate", "train.py"])
def test_the_issues_attack_exits_1_with_one_paragraph_and_no_run_folder(command, gallery, tmp_path):
    path, marker, key, target = gallery["torch.load with an embedded payload"]
    if command == "train.py":
        done = run_cli(*quick(f"ckpt_path={path}"), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    else:
        done = subprocess.run([sys.executable, "-m", command, f"ckpt={path}", f"out={tmp_path / 'x.png'}"
                               if command == "gan.generate" else "n=10"], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "GAN_DATA_DIR": DATA_ROOT}, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and key in last and target in last and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / "run").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GALLERY))
def test_every_crafted_checkpoint_exits_1_from_a_command_line(name, gallery, tmp_path):
    """Each crafted file through one of the three command lines in turn (every file meets every
    loader in-process above; each command line meets the issue's attack in the quick suite)."""
    path, marker, key, target = gallery[name]
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT, "PYTHONPATH": f"{path.parent}{os.pathsep}{ROOT}"}
    commands = ([ROOT / "train.py", *quick(f"ckpt_path={path}"), f"hydra.run.dir={tmp_path / 'run'}"],
                ["-m", "gan.evaluate", f"ckpt={path}", "n=10"],
                ["-m", "gan.generate", f"ckpt={path}", f"out={tmp_path / 'x.png'}"])
    argv = commands[list(GALLERY).index(name) % len(commands)]
    done = subprocess.run([sys.executable, *map(str, argv)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and key in last and target in last, (argv, done.stderr[-2000:])
    assert not marker.exists() and not (tmp_path / "run").exists() and not (tmp_path / "x.png").exists()


def recipes() -> list[list[str]]:
    """Every recipe; those on your own folder are given one (any folder: nothing here reads its images)."""
    return [[], *([f"experiment={p.stem}", *([f"data.root={DATA_ROOT}"] if "folder" in p.stem else [])]
                  for p in sorted((CONF / "experiment").glob("*.yaml")))]


@pytest.mark.parametrize("old", [False, True], ids=["resolved", "old-format"])
@pytest.mark.parametrize("overrides", recipes(), ids=lambda o: o[0] if o else "default")
def test_checkpoints_of_every_recipe_load_as_the_project_wrote_them(overrides, old, tmp_path, monkeypatch):
    """A checkpoint of each recipe, as CheckpointContents fills it (and as older versions did,
    without the resolved config), rebuilds the same generator and its data module."""
    cfg = make_cfg(*overrides, run_dir=tmp_path / "run")
    module = GAN.from_config(cfg)
    checkpoint = {"state_dict": module.state_dict(), "global_step": 0}
    CheckpointContents.of(cfg).on_save_checkpoint(None, module, checkpoint)
    if old:  # as older versions wrote them: unresolved only, the data root as conf/ writes it
        del checkpoint["resolved_config"]
        if not cfg.data._target_.endswith("FolderDataModule"):  # (a folder's root is the one given on the command line)
            checkpoint["config"]["data"]["root"] = "${oc.env:GAN_DATA_DIR,data}"
        monkeypatch.setenv("GAN_DATA_DIR", DATA_ROOT)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    generator, config, _ = load_generator(str(tmp_path / "last.ckpt"))
    assert type(generator) is type(module.generator)
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(), module.generator.state_dict().values()))
    data = datamodule_of(config, None, (CONF,))
    assert type(data).__name__ == cfg.data._target_.rsplit(".", 1)[1]
    assert Path(data.root).resolve() == Path(DATA_ROOT).resolve()  # (a folder's root is kept resolved)
    assert data.batch_size == cfg.data.batch_size and data.image_shape == tuple(cfg.data.image_shape)


def test_a_checkpoint_never_names_where_data_is_downloaded(saved, tmp_path, monkeypatch):
    """The root the run read from is used when it exists here, without downloading; else this
    machine's own data root (conf/data's ${oc.env:GAN_DATA_DIR,data}), where downloading is allowed."""
    checkpoint = copy.deepcopy(saved)
    (tmp_path / "theirs").mkdir()
    checkpoint["resolved_config"]["data"]["root"] = str(tmp_path / "theirs")
    torch.save(checkpoint, tmp_path / "a.ckpt")
    _, config, _ = load_generator(str(tmp_path / "a.ckpt"))
    data = datamodule_of(config, None, (CONF,))
    assert data.root == tmp_path / "theirs" and data.download is False
    checkpoint["resolved_config"]["data"]["root"] = "/no/such/folder"
    torch.save(checkpoint, tmp_path / "b.ckpt")
    monkeypatch.setenv("GAN_DATA_DIR", str(tmp_path / "mine"))
    _, config, _ = load_generator(str(tmp_path / "b.ckpt"))
    data = datamodule_of(config, None, (CONF,))
    assert data.root == tmp_path / "mine" and data.download is True
    assert datamodule_of(config, str(tmp_path / "given"), (CONF,)).root == tmp_path / "given"


def test_the_allowlist_is_read_off_conf_so_a_new_option_is_allowed_by_being_written(saved, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "model" / "tiny.yaml").write_text(
        "# A network of the user's own.\ndefaults:\n  - mlp\n  - _self_\n\n"
        "generator:\n  _target_: tests.config.test_untrusted.TinyGenerator\n")
    assert "tests.config.test_untrusted.TinyGenerator" in offered((conf,)).at("model.generator").targets
    assert "tests.config.test_untrusted.TinyGenerator" not in offered().at("model.generator").targets
    tiny = TinyGenerator(8, [1, 28, 28])
    checkpoint = copy.deepcopy(saved)
    checkpoint["resolved_config"]["model"]["generator"] = {"_target_": "tests.config.test_untrusted.TinyGenerator",
                                                           "latent_dim": 8, "out_shape": [1, 28, 28]}
    checkpoint["state_dict"] = {f"generator.{k}": v for k, v in tiny.state_dict().items()}
    torch.save(checkpoint, tmp_path / "tiny.ckpt")
    with pytest.raises(UserError, match=r"model.generator._target_=tests.config.test_untrusted.TinyGenerator. is not what conf/"):
        load_generator(str(tmp_path / "tiny.ckpt"))
    generator, _, _ = load_generator(str(tmp_path / "tiny.ckpt"), conf_dirs=(CONF, conf))
    assert type(generator) is TinyGenerator and torch.equal(generator.net[0].weight, tiny.net[0].weight)
    write(GenerateArgs(ckpt=str(tmp_path / "tiny.ckpt"), n=4, out=str(tmp_path / "tiny.png"), config_dir=str(conf)))
    assert Image.open(tmp_path / "tiny.png").size[0] > 28
    fake = SimpleNamespace(runtime=SimpleNamespace(config_sources=[SimpleNamespace(schema="file", path=str(conf)),
                                                                   SimpleNamespace(schema="pkg", path="hydra.conf")]))
    assert config_folders(fake) == (CONF, conf)  # what a resume run with --config-dir allows


def test_a_config_that_asks_for_more_than_its_weights_is_refused_before_memory_is_taken(saved, tmp_path):
    checkpoint = copy.deepcopy(saved)
    checkpoint["resolved_config"]["model"]["generator"]["hidden_dims"] = [2**20, 2**20]  # 4 TB of weights
    torch.save(checkpoint, tmp_path / "huge.ckpt")
    with pytest.raises(UserError, match="weights do not fit the network its config describes"):
        load_generator(str(tmp_path / "huge.ckpt"))
    checkpoint["resolved_config"]["model"]["generator"]["hidden_dims"] = [2**31, 2**31]  # more than torch can address
    torch.save(checkpoint, tmp_path / "huger.ckpt")
    with pytest.raises(UserError, match=r"`model.generator` \(gan.networks.MLPGenerator\) cannot be built from its config"):
        load_generator(str(tmp_path / "huger.ckpt"))


def test_an_old_checkpoint_whose_references_would_multiply_is_read_without_resolving_them(saved, tmp_path):
    """A "billion laughs" of references (each level a list of two references to the one below) is
    left unknown outside the rebuilt groups and refused inside them; plain references still resolve."""
    checkpoint = copy.deepcopy(saved)
    del checkpoint["resolved_config"]
    levels = {"lol0": [1, 2], **{f"lol{i}": [f"${{lol{i - 1}}}", f"${{lol{i - 1}}}"] for i in range(1, 40)}}
    checkpoint["config"].update(levels)
    torch.save(checkpoint, tmp_path / "laughs.ckpt")
    _, config = load_checkpoint(str(tmp_path / "laughs.ckpt"))
    assert config.values["lol1"] == [[1, 2], [1, 2]]  # one level of lists is what conf/ itself writes
    assert config.values["lol39"] == [None, None] and {"lol2.0", "lol39.1"} <= config.unknown
    assert config.values["model"]["generator"]["latent_dim"] == 100  # ${model.latent_dim}
    checkpoint["config"]["model"]["generator"]["hidden_dims"] = "${lol39}"
    torch.save(checkpoint, tmp_path / "laughs-in-a-network.ckpt")
    with pytest.raises(UserError, match=r"`model.generator.hidden_dims=\$\{lol39\}` names an interpolation conf/ never"):
        load_checkpoint(str(tmp_path / "laughs-in-a-network.ckpt"))


def test_torch_releases_with_a_weights_only_hole_refuse_to_load(saved, tmp_path, monkeypatch):
    torch.save(saved, tmp_path / "a.ckpt")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(UserError, match=r"torch 2.5.1\+cpu cannot load a checkpoint safely.*Upgrade torch"):
        load_checkpoint(str(tmp_path / "a.ckpt"))


def test_a_crafted_inception_weights_file_is_refused_without_running_it(tmp_path):
    pytest.importorskip("torch_fidelity")
    from gan.metrics.inception import InceptionFeatures

    torch.save({"weight": Evil(tmp_path / "PWNED")}, tmp_path / "inception.pth")
    with pytest.raises(UserError, match="inception_weights=.*refused: it holds Python objects"):
        InceptionFeatures(str(tmp_path / "inception.pth"))
    assert not (tmp_path / "PWNED").exists()


def png(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey PNG of width x height zeros; with `rows`, only that many rows of data follow the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pack = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # each row: filter byte 0, then its pixels
    data = b"".join(pack.compress(row) for _ in range(height if rows is None else rows)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """A folder of 8 good images, two decompression bombs (a 1-row PNG whose header claims
    100,000 x 100,000 pixels, and a 100 kB one that really decodes to 10,000 x 10,000), a link to
    /etc/passwd, a link to a folder outside, and a file named with a newline."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    root = tmp_path / "images"
    root.mkdir()
    for i in range(8):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(root / f"{i}.png")
    (root / "bomb.png").write_bytes(png(100_000, 100_000, rows=1))
    (root / "real_bomb.png").write_bytes(png(10_000, 10_000))
    (root / "passwd.png").symlink_to("/etc/passwd")
    (tmp_path / "elsewhere").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "elsewhere" / "private.png")
    (root / "photos").symlink_to(tmp_path / "elsewhere")
    shutil.copy(root / "0.png", root / "new\nline.png")
    return root


def test_hostile_image_files_are_skipped_and_counted_and_refused_when_strict(hostile, tmp_path, caplog, monkeypatch):
    from gan.data import FolderDataModule

    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path / "cache"))
    data = FolderDataModule(root=str(hostile), image_size=8, channels=1, batch_size=2, holdout=0.2, workers=0)
    with caplog.at_level("INFO", logger="gan.data.folder"):
        data.prepare_data()
    assert data.meta["count"] == 8 and sorted(data.files()) == [f"{i}.png" for i in range(8)]
    assert [name for name, _ in data.meta["skipped"]] == ["bomb.png", "real_bomb.png"]
    assert all("decompression bomb" in why for _, why in data.meta["skipped"])
    said = caplog.records[-1].getMessage()
    assert "1 files not read, each a link out of data.root (not followed) (first: passwd.png)" in said
    assert "1 files not read, each a link to a folder (not followed) (first: photos)" in said
    assert "1 files not read, each a name with control characters (first: new\\nline.png)" in said
    assert "2 unreadable files skipped (first: bomb.png" in said
    strict = tmp_path / "strict"
    shutil.copytree(hostile, strict, symlinks=True, ignore=shutil.ignore_patterns("new*", "photos"))
    with pytest.raises(UserError, match=r"data.strict=true: .*passwd.png in data.root is a link out of data.root"):
        FolderDataModule(root=str(strict), image_size=8, channels=1, batch_size=2, strict=True, workers=0).prepare_data()


def test_decoding_a_folder_with_decompression_bombs_takes_no_more_memory_than_without(hostile, tmp_path):
    """Peak memory of a fresh process decoding the folder, bombs and all, against the same folder
    without them (each in its own process: a peak is per process). PIL's own limit is switched off,
    as a careless library might: the folder's holds. (The data limit keeps a regression from
    taking the machine: the 100,000 x 100,000 bomb alone would ask for 10 GB.)"""
    clean = tmp_path / "clean"
    shutil.copytree(hostile, clean, symlinks=True, ignore=shutil.ignore_patterns("*bomb*"))
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_DATA, (4 << 30, 4 << 30)); "
              "from PIL import Image; from gan.data import FolderDataModule; Image.MAX_IMAGE_PIXELS = None; "
              "FolderDataModule(root=sys.argv[1], image_size=8, channels=1, batch_size=2, workers=0).prepare_data(); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {}
    for name, folder in (("bombs", hostile), ("clean", clean)):
        done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "GAN_CACHE_DIR": str(tmp_path / f"cache-{name}")})
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[name] = int(done.stdout.split()[-1]) / 1024  # MiB
    assert peaks["bombs"] - peaks["clean"] < 40, peaks  # decoded, the real bomb alone adds hundreds of MiB


def test_generate_and_export_never_overwrite_what_they_did_not_write(saved, tmp_path, mnist_root):
    from gan.export_images import Args as ExportArgs
    from gan.export_images import export

    torch.save(saved, tmp_path / "a.ckpt")
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"a picture of my own")
    with pytest.raises(UserError, match="mine.png exists: give a new file name, or overwrite=true"):
        write(GenerateArgs(ckpt=str(tmp_path / "a.ckpt"), n=4, out=str(mine)))
    (tmp_path / "dangling.png").symlink_to(tmp_path / "outside" / "target.png")
    with pytest.raises(UserError, match="dangling.png is a link to nowhere"):
        write(GenerateArgs(ckpt=str(tmp_path / "a.ckpt"), n=4, out=str(tmp_path / "dangling.png")))
    assert mine.read_bytes() == b"a picture of my own" and not (tmp_path / "outside").exists()
    write(GenerateArgs(ckpt=str(tmp_path / "a.ckpt"), n=4, out=str(mine), overwrite=True))
    assert Image.open(mine).size[0] > 28 and [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []

    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="is not empty and no export of this command"):
            export(ExportArgs(out=str(tmp_path / "theirs"), root=mnist_root, n=2, overwrite=overwrite))
    (tmp_path / "link").symlink_to(tmp_path / "theirs")
    with pytest.raises(UserError, match="is a link"):
        export(ExportArgs(out=str(tmp_path / "link"), root=mnist_root, n=2))
    export(ExportArgs(out=str(tmp_path / "png"), root=mnist_root, n=2))
    with pytest.raises(UserError, match="holds an earlier export: give overwrite=true"):
        export(ExportArgs(out=str(tmp_path / "png"), root=mnist_root, n=2))
    export(ExportArgs(out=str(tmp_path / "png"), root=mnist_root, n=3, overwrite=True))
    assert len(list((tmp_path / "png").rglob("*.png"))) == 3 and (tmp_path / "theirs" / "notes.txt").read_text() == "keep"


def test_the_report_reads_sweep_folders_as_data_without_resolving_them(tmp_path):
    from gan.report import read_job

    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed=${{unique_dir:{tmp_path / 'PWNED-1'}}}"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": f"${{unique_dir:{tmp_path / 'PWNED-2'}}}"}))
    found = read_job(job)
    assert found.overrides == {"seed": f"${{unique_dir:{tmp_path / 'PWNED-1'}}}"}  # the text, as data
    assert not (tmp_path / "PWNED-1").exists() and not (tmp_path / "PWNED-2").exists()
