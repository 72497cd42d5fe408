"""data=folder and data=cifar10: users' own images, decoded once into a cache, trained on like MNIST."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan.data import CIFAR10DataModule, FolderDataModule, MNISTDataModule
from gan.data.folder import Decoder
from gan.data_bench import grey_squares, limited_train
from gan.errors import UserError
from gan.training.fit import fit
from tests.helpers import (
    DATA_ROOT,
    events,
    generator_weights,
    make_cfg,
    quick,
    run_cli,
    write_fake_cifar10,
    write_image_folder,
)


@pytest.fixture(scope="module")
def cache():
    """One cache folder for this module's tests (decoded folders and classifiers), none shared with others."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_CACHE_DIR", tmp)
        yield Path(tmp)


@pytest.fixture(scope="module")
def photos(cache, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("photos")
    return root, write_image_folder(root)


def folder_run(root: Path, *overrides: str) -> list[str]:
    return quick("data=folder", f"data.root={root}", "data.batch_size=16", *overrides)


def test_a_folder_is_decoded_once_with_its_problems_counted_and_read_from_the_cache_after(photos, caplog, monkeypatch):
    root, wrote = photos
    dm = FolderDataModule(root=str(root), image_size=32, labels="folders")
    with caplog.at_level("INFO", logger="gan.data.folder"):
        dm.prepare_data()
    meta = dm.meta
    assert meta["count"] == wrote["images"]  # the hidden folder's copy and notes.txt are not images of the set
    assert sorted(Path(name).name for name, _ in meta["skipped"]) == ["empty.webp", "not_an_image.jpg", "truncated.png"]
    assert meta["converted"] == {"grey": wrote["grey"]}
    said = caplog.records[-1].getMessage()
    assert "3 unreadable files skipped" in said and f"{wrote['grey']} grey images converted to colour" in said
    assert "1 files that are not PNG, JPEG or WebP ignored" in said and "3 classes" in said
    dm.setup("fit")
    test_images, test_labels = dm.split(train=False)
    assert dm.images.dtype == torch.uint8 and dm.images.shape == (meta["train"], 3, 32, 32)
    held_out = round(0.1 * (wrote["images"] + wrote["broken"]))  # of the files found, broken ones included
    assert len(test_images) == meta["count"] - meta["train"] and held_out - wrote["broken"] <= len(test_images) <= held_out
    assert dm.num_classes == 3 and set(dm.labels.tolist()) == set(test_labels.tolist()) == {0, 1, 2}
    # each image keeps its class (sorted folder names): red, green and blue images are bright in their channel
    assert dm.meta["classes"] == ["blue", "green", "red"]
    peaks = dm.images.float().amax(dim=(2, 3))
    colourful = peaks.max(dim=1).values - peaks.min(dim=1).values > 100  # not the grey files
    assert colourful.sum() > 50 and (peaks.argmax(dim=1) == torch.tensor([2, 1, 0])[dm.labels])[colourful].all()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("gan.data.folder.decode", no_decoding)
    again = FolderDataModule(root=str(root), image_size=32, labels="folders")
    again.setup("fit")
    assert torch.equal(again.images, dm.images)
    (root / "green" / "new.png").write_bytes((root / "green" / "000.png").read_bytes())  # the folder changed
    with pytest.raises(AssertionError, match="decoded again"):
        FolderDataModule(root=str(root), image_size=32, labels="folders").prepare_data()
    (root / "green" / "new.png").unlink()


def test_crop_pad_transparency_and_16_bit_grey(tmp_path):
    half = np.zeros((20, 40, 3), np.uint8)
    half[:, :20] = 255  # left half white
    Image.fromarray(half).save(tmp_path / "half.png")
    clear = np.full((20, 20, 4), 255, np.uint8)
    clear[..., 3] = 0  # white, but fully transparent
    Image.fromarray(clear, "RGBA").save(tmp_path / "clear.png")
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "deep.png")
    crop = Decoder(tmp_path, ["half.png"], 16, 3, "crop")[0][1]  # 32x16 after scaling, the middle 16 columns kept
    assert crop.shape == (3, 16, 16) and (crop[:, :, 1:7] > 250).all() and (crop[:, :, 9:15] < 5).all()
    pad = Decoder(tmp_path, ["half.png"], 16, 3, "pad")[0][1]  # 16x8 after scaling, black bars above and below
    assert (pad[:, :4] == 0).all() and (pad[:, 12:] == 0).all() and (pad[:, 6:10, 1:7] > 250).all()
    assert (Decoder(tmp_path, ["clear.png"], 16, 3, "crop")[0][1] == 0).all()  # transparency over black
    index, pixels, what, detail = Decoder(tmp_path, ["deep.png"], 16, 1, "crop")[0]
    assert (pixels == 255).all() and what == ""  # 16-bit white stays white, not clipped garbage
    _, rgb, what, detail = Decoder(tmp_path, ["deep.png"], 16, 3, "crop")[0]
    assert rgb.shape == (3, 16, 16) and what == "converted" and detail.startswith("grey")


def test_strict_stops_at_the_first_bad_file_naming_it(tmp_path, cache):
    clean = tmp_path / "clean"
    (clean / "a").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)).save(clean / "a" / "colour.png")
    (clean / "a" / "broken.png").write_bytes((clean / "a" / "colour.png").read_bytes()[:100])  # cut mid-pixels
    with pytest.raises(UserError, match=r"data.strict=true: .*broken.png is not a readable image \(.*Error"):
        FolderDataModule(root=str(clean), image_size=8, strict=True, batch_size=1).prepare_data()
    (clean / "a" / "broken.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(clean / "a" / "grey.png")
    with pytest.raises(UserError, match=r"data.strict=true: .*grey.png is grey \(L\) but data.channels=3"):
        FolderDataModule(root=str(clean), image_size=8, strict=True, batch_size=1).prepare_data()
    FolderDataModule(root=str(clean), image_size=8, batch_size=1).prepare_data()  # converts, and caches that
    with pytest.raises(UserError, match="found when the cache was made without data.strict"):
        FolderDataModule(root=str(clean), image_size=8, strict=True, batch_size=1).prepare_data()


def one_class(tmp_path: Path) -> Path:
    (tmp_path / "only").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "only" / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("make, overrides, message", [
    (lambda p: p / "nowhere", (), r"data.root=.*nowhere is not a folder"),
    (lambda p: p, (), r"data.root=.* holds no images: .*\(it is empty\)"),
    (lambda p: (p / "x.txt").write_text("x") and p, (), r"holds no images: .*\(it holds 1 other files\)"),
    (one_class, ("data.labels=folders",), r"data.labels=folders found one class \(only/\)"),
    (lambda p: one_class(p) / "only", ("data.labels=folders",), r"4 images lie directly in"),
    (one_class, ("model.conditional=true",), r"model.conditional=true needs class labels"),
    (one_class, ("data.num_classes=5",), r"data.num_classes=5 but data.root=.* has no classes"),
    (one_class, ("data.root=null",), r"data=folder needs data.root="),
    (one_class, ("data.image_size=0",), r"`data.image_size=0`: input should be greater than 0"),
    (one_class, ("data.channels=2",), r"`data.channels=2`: input should be 1 or 3"),
    (one_class, ("data.image_shape=[3,8,8]",), r"data.image_shape=\[3, 8, 8\] but data.channels=3 and data.image_size=64"),
])
def test_bad_folders_and_keys_get_one_paragraph_naming_the_key(make, overrides, message, tmp_path, cache):
    root = make(tmp_path)
    cfg = make_cfg(*folder_run(root, "data.batch_size=2", *overrides), run_dir=tmp_path / "run")
    with pytest.raises(UserError) as err:
        fit(cfg)
    assert "\n" not in str(err.value)
    assert re.search(message, str(err.value)), str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model, size, extra", [("mlp", 32, ("data.labels=folders", "model.conditional=true")),
                                                ("dcgan", 32, ()), ("dcgan", 64, ("model.generator.width=16",
                                                                                  "model.discriminator.width=16"))])
def test_mlp_and_dcgan_train_on_a_folder_in_colour(model, size, extra, photos, tmp_path):
    root, _ = photos
    fit(make_cfg(*folder_run(root, f"model={model}", f"data.image_size={size}", *extra), run_dir=tmp_path))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    grid = np.asarray(Image.open(tmp_path / "images" / "000012.png").convert("RGB")).astype(int)
    assert np.abs(grid[..., 0] - grid[..., 1]).max() > 0  # colour samples, not grey
    assert events(tmp_path).Images("samples")[-1].width > 5 * size  # the TensorBoard grid is at the dataset's size


@pytest.mark.parametrize("experiment, augment, small", [
    ("dcgan_small_folder", "DiffAugment", ("data.image_size=32", "model.generator.width=16", "model.discriminator.width=16")),
    ("r3gan_folder", "ADA", ("data.image_size=32", "model.widths=[8,8,8,8]", "model.cardinalities=[2,2,2,2]",
                             "model.blocks=[1,1,1,1]")),
])
def test_the_folder_recipes_augment_what_d_sees_and_mirror_the_folder(experiment, augment, small, photos, tmp_path):
    root, _ = photos
    fit(make_cfg(*folder_run(root, f"experiment={experiment}", "data.batch_size=16", *small), run_dir=tmp_path))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 12 and checkpoint["config"]["augment"]["_target_"].endswith(augment)
    assert checkpoint["config"]["data"]["mirror"] is True
    assert any(k.startswith("generator_ema.") for k in checkpoint["state_dict"])
    seen = events(tmp_path).Images("reals_seen")
    assert [e.step for e in seen] == [0, 5, 10, 12] and seen[0].width > 5 * 32  # at the start and with every grid


def test_resume_is_exact_and_the_memory_mapped_cache_reads_the_same_batches(photos, tmp_path):
    root, _ = photos
    run = folder_run(root, "model=dcgan", "data.image_size=32", "trainer.max_steps=12")
    fit(make_cfg(*run, "data.in_memory=true", run_dir=tmp_path / "straight"))
    fit(make_cfg(*run, "data.in_memory=false", "trainer.max_steps=6", run_dir=tmp_path / "first"))
    fit(make_cfg(*run, "data.in_memory=false", f"ckpt_path={tmp_path / 'first'}", run_dir=tmp_path / "resumed"))
    a = generator_weights(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    b = generator_weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_metrics_on_labelled_folders_and_a_plain_statement_without_labels(photos, tmp_path, caplog):
    root, _ = photos
    with caplog.at_level("INFO"):
        fit(make_cfg(*folder_run(root, "data.labels=folders", "data.image_size=32", "eval_every=6",
                                 "callbacks.metrics.n=60"), run_dir=tmp_path / "labelled"))
    assert [e.step for e in events(tmp_path / "labelled").Scalars("metrics/classifier60_test/fid")] == [6, 12]
    assert (tmp_path / "labelled" / "checkpoints" / "best_fid.ckpt").is_file()
    [said] = [r.getMessage() for r in caplog.records if "accuracy on its held-out images" in r.getMessage()]
    assert float(said.split(": ")[1].split("%")[0]) > 60  # 3 classes: chance is 33%; a few hundred steps learn the colours
    caplog.clear()
    with caplog.at_level("INFO"):
        fit(make_cfg(*folder_run(root, "data.image_size=32", "eval_every=6"), run_dir=tmp_path / "plain"))
    said = [r.getMessage() for r in caplog.records if "no metrics are computed" in r.getMessage()]
    assert len(said) == 1 and "callbacks.metrics.protocol=fid10k_test" in said[0] and "data.labels=folders" in said[0]
    assert not [t for t in events(tmp_path / "plain").Tags()["scalars"] if t.startswith("metrics/")]  # no fake numbers
    assert not (tmp_path / "plain" / "checkpoints" / "best_fid.ckpt").exists()
    with pytest.raises(UserError, match=r"optimized_metric=metrics/fid is not reported .*data.labels=none"):
        fit(make_cfg(*folder_run(root, "eval_every=6", "optimized_metric=metrics/fid"), run_dir=tmp_path / "x"))
    from gan.evaluate import Args, evaluate

    with pytest.raises(UserError, match=r"^No metrics are computed: .*callbacks.metrics.protocol=fid10k_test"):
        evaluate(Args(ckpt=str(tmp_path / "plain"), n=50))


def test_exported_mnist_decodes_to_the_very_pixels_of_mnist(tmp_path, cache, mnist_root):
    from gan.export_images import Args, export

    export(Args(out=str(tmp_path / "png"), root=mnist_root, n=50))
    classes = sorted(p.name for p in (tmp_path / "png").iterdir() if not p.name.startswith("."))  # .gan-export: its mark
    assert classes[:2] == ["0_0-zero", "1_1-one"] and len(classes) == 10
    with pytest.raises(UserError, match="holds an earlier export: give overwrite=true"):
        export(Args(out=str(tmp_path / "png"), root=mnist_root, n=1))
    dm = FolderDataModule(root=str(tmp_path / "png"), image_size=28, channels=1, labels="folders", batch_size=4)
    images, labels = dm.mapped()
    mnist_images, mnist_labels = MNISTDataModule(root=mnist_root).split(train=True)
    names = [int(name.rsplit("_", 1)[1].removesuffix(".png")) for name in dm.files()]
    assert torch.equal(images, mnist_images[names]) and torch.equal(labels, mnist_labels[names])


def test_fake_cifar10_loads_trains_dcgan_and_is_scored_with_its_classifier(tmp_path, cache):
    write_fake_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False)
    dm.prepare_data()
    images, labels = dm.split(train=True)
    assert images.shape == (500, 3, 32, 32) and images.dtype == torch.uint8 and len(dm.split(train=False)[0]) == 200
    cfg = make_cfg(*quick("experiment=dcgan_cifar10", f"data.root={tmp_path}", "data.batch_size=16", "eval_every=6",
                          "callbacks.metrics.n=100", "model.generator.width=16", "model.discriminator.width=16",
                          "trainer.max_steps=12"), run_dir=tmp_path / "run")
    result = fit(cfg)
    assert result["global_step"] == 12 and np.isfinite(result["metrics/fid"]) and result["metrics/modes_covered"] >= 1
    from gan.evaluate import Args, evaluate

    scores = evaluate(Args(ckpt=str(tmp_path / "run"), n=100))
    assert scores["n"] == 100 and scores["floor"]["fid"] < scores["fid"]  # real images score better than 12 iterations


SMALL_R3GAN_NETS = ("model.cardinalities=[2,2,2,2]", "model.blocks=[1,1,1,1]")


@pytest.mark.parametrize("experiment, small", [
    ("sngan_resnet_cifar10", ("model.width=4",)),
    ("r3gan_cifar10", ("model.widths=[8,8,8,8]", *SMALL_R3GAN_NETS, "schedule.kimg=0.2")),  # its 20,000 kimg: no visible move
    ("r3gan_cifar10", ("model.widths=[8,8,8,8]", *SMALL_R3GAN_NETS, "schedule.kimg=0.2", "model.conditional=false")),
])
def test_the_residual_cifar10_recipes_train_with_their_schedules(experiment, small, tmp_path):
    write_fake_cifar10(tmp_path)
    fit(make_cfg(*quick(f"experiment={experiment}", f"data.root={tmp_path}", "data.batch_size=16", *small),
                 run_dir=tmp_path / "run"))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    lrs = [e.value for e in events(tmp_path / "run").Scalars("train/lr_g")]
    assert checkpoint["global_step"] == 12 and lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]  # decaying


def test_a_crafted_cifar_file_is_refused_without_running_it(tmp_path):
    write_fake_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": Exploit(), "labels": []}, f, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_3 is truncated or corrupt \(it names posix.system"):
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare_data()
    assert not marker.exists()


def test_cifar10_offline_names_the_folder_and_its_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", offline)
    with pytest.raises(UserError) as err:
        CIFAR10DataModule(root=str(tmp_path)).prepare_data()
    text = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in text and "data_batch_1" in text and "could not be downloaded" in text



@pytest.mark.slow
def test_a_set_larger_than_the_memory_limit_is_decoded_and_trained_from_the_mapped_cache(tmp_path, cache):
    """1500 grey 512x512 images: 375 MiB of pixels, under a limit of 256 MiB beyond torch's own."""
    root = tmp_path / "big"
    assert grey_squares(root, 1500) > 256 * 2**20
    run = ["data=folder", f"data.root={root}", "data.channels=1", "data.image_size=512", "data.batch_size=2",
           "model=dcgan", "model.generator.width=2", "model.discriminator.width=2", "trainer=cpu", "trainer.max_steps=3",
           "eval_every=0", "sample_every=3"]
    streamed = limited_train(256, run, cwd=tmp_path, env={"GAN_DATA_DIR": DATA_ROOT})  # data.in_memory=auto
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert "read from the memory-mapped cache (more than half of the" in streamed.stdout
    memory = json.loads(streamed.stdout.split("memory: ")[1].splitlines()[0])
    assert memory["data_growth"] < 256 * 2**20 < 1500 * 512 * 512
    copied = limited_train(256, [*run, "data.in_memory=true"], cwd=tmp_path, env={"GAN_DATA_DIR": DATA_ROOT})
    assert copied.returncode == 1
    assert "data.in_memory=true: the 0.33 GiB of training images do not fit" in copied.stdout + copied.stderr


@pytest.mark.slow
def test_the_readme_commands_export_mnist_and_train_dcgan_on_the_folder(tmp_path, cache):
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    export = subprocess.run([sys.executable, "-m", "gan.export_images", "dataset=mnist", f"out={tmp_path / 'png'}", "n=300"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0 and "300 images" in export.stdout, export.stderr[-2000:]
    done = run_cli("data=folder", f"data.root={tmp_path / 'png'}", "model=dcgan", *quick("trainer.max_steps=4"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    [run_dir] = (tmp_path / "outputs").glob("*/*")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert "300 grey images converted to colour" in (run_dir / "train.log").read_text()


def test_the_gpu_placement_rule_and_the_memory_this_process_may_take(monkeypatch):
    import resource

    from gan.data.batches import fits_on_device
    from gan.data.memory import available_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 4000))
    assert fits_on_device(500, torch.device("cuda", 0)) and not fits_on_device(501, torch.device("cuda", 0))
    assert not fits_on_device(1, torch.device("cpu"))  # training on the CPU: the images stay where they are
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    used = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmData:"))
    resource.setrlimit(resource.RLIMIT_DATA, (used + 2**30, hard))
    try:
        assert 0.9 * 2**30 < available_memory() <= 2**30  # what `ulimit -d` leaves, not the machine's free memory
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
