"""gan.generate's modes (grid, walk, classes, nearest), truncation, and gan.timelapse: on short real
runs (an MLP with normal noise, a DCGAN with uniform noise) and the conditional EMA fixture, every
file read back with Pillow."""

from __future__ import annotations

import gc
import math
import os
import re
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan import animations
from gan.errors import UserError
from gan.generate import Args, as_bytes, class_rows, neighbours, write
from gan.run.checkpoints.files import load_trained
from gan.samples import generate, interpolate, truncate, truncated
from gan.timelapse import Args as TimelapseArgs
from gan.timelapse import timelapse
from tests.helpers import CONDITIONAL_CKPT as CONDITIONAL
from tests.helpers import ROOT


def frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of an animated GIF or WebP as RGB pixels, and its time in milliseconds."""
    pixels, times = [], []
    with Image.open(path) as image:
        for i in range(image.n_frames):
            image.seek(i)
            image.load()
            pixels.append(np.asarray(image.convert("RGB")))
            times.append(image.info["duration"])
    return pixels, times


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("run, suffix", [("mlp", ".gif"), ("mlp", ".webp"), ("dcgan", ".webp")])
def test_a_walks_frames_at_its_seeds_are_the_seed_grids_bit_for_bit(runs, tmp_path, run, suffix):
    for seed in (3, 7, 11):
        write(Args(ckpt=str(runs[run]), n=9, seed=seed, out=str(tmp_path / f"seed{seed}.png")))
    out = tmp_path / f"walk{suffix}"
    write(Args(ckpt=str(runs[run]), mode="walk", n=9, seeds=[3, 7, 11], frames=4, fps=10, loop=False, out=str(out)))
    got, times = frames(out)
    assert len(got) == 4 * 2 + 1  # 4 frames per step, the last seed as the last frame
    assert sum(times) == pytest.approx(1000 * len(got) / 10, abs=10)  # as long as frames / fps
    for index, seed in ((0, 3), (4, 7), (8, 11)):
        assert np.array_equal(got[index], png(tmp_path / f"seed{seed}.png")), (index, seed)
    assert not np.array_equal(got[1], got[0]) and not np.array_equal(got[1], got[4])  # it moves between them
    looped = tmp_path / f"loop{suffix}"
    write(Args(ckpt=str(runs[run]), mode="walk", n=9, seeds=[3, 7], frames=5, fps=25, out=str(looped)))
    again, times = frames(looped)
    assert len(again) == 10 and sum(times) == pytest.approx(400, abs=10)  # back to seed 3, which is not repeated
    assert np.array_equal(again[0], got[0]) and np.array_equal(again[5], got[4])


def test_walk_durations_add_up_to_frames_over_fps_in_the_units_each_format_keeps():
    for count, fps in ((30, 30), (7, 24), (100, 50)):
        assert sum(animations.delays(count, fps, 10)) * 10 == pytest.approx(1000 * count / fps, abs=10)
        assert sum(animations.delays(count, fps, 1)) == pytest.approx(1000 * count / fps, abs=1)
    assert list(animations.delays(3, 30, 10)) == [3, 4, 3]


@pytest.mark.parametrize("suffix", animations.FORMATS)
def test_animations_are_written_a_frame_at_a_time(tmp_path, suffix):
    if suffix == ".mp4" and animations.encoder() is None:
        pytest.skip("no ffmpeg here")
    alive: list[weakref.ref] = []
    held = []

    def made():
        rng = np.random.default_rng(0)
        for _ in range(12):
            gc.collect()
            held.append(sum(ref() is not None for ref in alive))  # frames still referenced when the next is asked for
            frame = np.repeat(rng.integers(0, 256, (20, 30, 1), dtype=np.uint8), 3, axis=2)
            alive.append(weakref.ref(frame.base if frame.base is not None else frame))
            yield frame

    animations.write_animation(tmp_path / f"a{suffix}", made(), 12, 10)
    assert max(held) <= 1  # at most the frame being written is held: memory does not grow with the frames
    if suffix != ".mp4":
        assert len(frames(tmp_path / f"a{suffix}")[0]) == 12
    else:
        probe = subprocess.run([animations.encoder(), "-i", str(tmp_path / "a.mp4")], capture_output=True, text=True)
        assert "h264" in probe.stderr and "30x20" in probe.stderr


def test_colour_frames_are_exact_in_webp_and_in_a_gif_of_few_colours(tmp_path):
    rng = np.random.default_rng(1)
    few = [rng.integers(0, 4, (16, 24, 3), dtype=np.uint8) * 64 for _ in range(3)]  # 64 colours
    for suffix in (".gif", ".webp"):
        animations.write_animation(tmp_path / f"c{suffix}", iter(few), 3, 5)
        assert all(np.array_equal(a, b) for a, b in zip(frames(tmp_path / f"c{suffix}")[0], few)), suffix


def test_spherical_and_straight_interpolation_keep_their_ends_exactly():
    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 64, generator=rng), torch.randn(5, 64, generator=rng)
    assert torch.equal(interpolate(a, b, 0.0, True), a) and torch.equal(interpolate(a, b, 1.0, True), b)
    middle = interpolate(a, b, 0.5, spherical=True)
    # along the great circle the norm stays between the ends' (a straight line's midpoint is much shorter)
    assert (middle.norm(dim=1) >= torch.minimum(a.norm(dim=1), b.norm(dim=1)) * 0.999).all()
    assert (interpolate(a, b, 0.5, spherical=False).norm(dim=1) < middle.norm(dim=1)).all()
    u, v = torch.rand(5, 8, generator=rng) * 2 - 1, torch.rand(5, 8, generator=rng) * 2 - 1
    assert torch.allclose(interpolate(u, v, 0.25, spherical=False), 0.75 * u + 0.25 * v)
    assert torch.equal(interpolate(a, a, 0.3, True), a)  # parallel rows: no division by zero


def test_truncation_one_is_the_generator_itself_and_psi_pulls_the_noise_toward_its_mean(runs, tmp_path):
    generator = load_trained(str(runs["mlp"])).generator
    assert truncated(generator, 1.0) is generator
    z = generator.draw_noise(50, torch.Generator().manual_seed(0))
    assert torch.equal(truncate(z, 1.0), z) and torch.equal(truncate(z, 0.5), z * 0.5)
    half = truncated(generator, 0.5).draw_noise(50, torch.Generator().manual_seed(0))
    assert torch.equal(half, z * 0.5)
    for psi in (1.0, 0.7):
        write(Args(ckpt=str(runs["mlp"]), n=16, truncation=psi, out=str(tmp_path / f"psi{psi}.npy")))
    assert np.array_equal(np.load(tmp_path / "psi1.0.npy"), generate(generator, 16).numpy())
    assert not np.array_equal(np.load(tmp_path / "psi0.7.npy"), np.load(tmp_path / "psi1.0.npy"))
    spread = {psi: torch.cat([generate(truncated(generator, psi), 200, seed=1)]).flatten(1).std(0).mean().item()
              for psi in (1.0, 0.5, 0.1)}
    assert spread[1.0] > spread[0.5] > spread[0.1]  # less variety as psi falls


def test_a_class_sheet_is_one_row_per_class_each_the_grid_of_that_label(tmp_path):
    trained = load_trained(str(CONDITIONAL))
    assert trained.class_names[5] == "5 - five"  # MNIST's names, from the dataset the run trained on
    wanted, samples = class_rows(trained, Args(ckpt=str(CONDITIONAL), mode="classes", n=6, seed=2,
                                                classes=["3", "five", "Seven"]))
    assert wanted == [3, 5, 7] and samples.shape[:2] == (3, 6)
    for row, c in zip(samples, wanted):
        assert torch.equal(row, generate(trained.generator, 6, seed=2, label=c))  # mode=grid label=c seed=2
    out = tmp_path / "classes.png"
    write(Args(ckpt=str(CONDITIONAL), mode="classes", n=6, out=str(out)))
    with Image.open(out) as image:
        assert image.height > 10 * 28 and image.width > 6 * 28  # ten rows, enlarged
    with pytest.raises(UserError, match="classes: eleven is neither a class number"):
        write(Args(ckpt=str(CONDITIONAL), mode="classes", classes=["eleven"], out=str(tmp_path / "x.png")))


def test_nearest_finds_a_planted_training_image_at_distance_zero(runs, tmp_path, monkeypatch, mnist_classifier):
    import gan.generate as command

    trained = load_trained(str(runs["mlp"]))
    copy = as_bytes(generate(trained.generator, 4, seed=5))[2]
    real = command.datamodule_of

    def planted(config, root, dirs):  # the run's MNIST, a part of it, with sample 2 among the training images
        datamodule = real(config, root, dirs)
        split = datamodule.split

        def with_copy(train):
            images, labels = split(train)
            if train:
                images, labels = images[:3000].clone(), labels[:3000]
                images[1234] = copy
            return images, labels

        datamodule.split = with_copy
        return datamodule

    monkeypatch.setattr(command, "datamodule_of", planted)
    args = Args(ckpt=str(runs["mlp"]), mode="nearest", n=4, seed=5, k=3, out=str(tmp_path / "nearest.png"))
    samples, train, spaces = neighbours(trained, command.checked(args)[0])
    assert set(spaces) == {"pixels", "features"} and spaces["pixels"][0].shape == (4, 3)
    distances, indices = spaces["pixels"]
    assert indices[2, 0] == 1234 and distances[2, 0] == 0 and (distances[2, 1:] > 0).all()
    assert (distances[:, :-1] <= distances[:, 1:]).all()  # nearest first
    assert spaces["features"][1][2, 0] == 1234 and spaces["features"][0][2, 0] < 1e-3
    assert (distances[[0, 1, 3], 0] > 0).all()  # the other samples copy nothing
    write(Args(ckpt=str(runs["mlp"]), mode="nearest", n=4, seed=5, k=3, out=str(tmp_path / "nearest.png")))
    assert (tmp_path / "nearest.png").stat().st_size > 0


def test_a_timelapse_is_the_runs_grids_in_order_the_last_held(runs, tmp_path):
    grids = sorted((runs["mlp"] / "images").glob("*.png"))
    assert [g.name for g in grids] == ["000005.png", "000010.png", "000012.png"]
    out = tmp_path / "training.webp"
    timelapse(TimelapseArgs(run=str(runs["mlp"]), out=str(out), fps=4, hold=0.5))
    got, times = frames(out)
    assert len(got) == 3 + 2 and sum(times) == pytest.approx(1250, abs=1)
    assert all(np.array_equal(got[i], png(grids[min(i, 2)])) for i in range(5))  # each grid with its iteration on it
    folder = tmp_path / "grids"
    folder.mkdir()
    for g in grids:
        (folder / g.name).write_bytes(g.read_bytes())
    height, width = png(grids[0]).shape[:2]
    Image.new("RGB", (width + 40, 100), "red").save(folder / "000020.png")  # a wider grid
    timelapse(TimelapseArgs(run=str(folder), out=str(tmp_path / "t.gif"), fps=2, hold=0, every=2))
    got, _ = frames(tmp_path / "t.gif")
    assert len(got) == 3 and got[0].shape == got[2].shape == (height, width + 40, 3)  # 5, 12, 20 on the largest canvas
    assert (got[0][:, :20] == 255).all() and np.array_equal(got[0][:, 20:-20], png(grids[0]))  # centred on white


def test_the_help_names_every_mode_and_key():
    result = subprocess.run([sys.executable, "-m", "gan.generate", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    for word in ("mode=walk", "mode=classes", "mode=nearest", "truncation", "seeds", "frames", "fps", "loop", "scale"):
        assert word in result.stdout, word


@pytest.mark.parametrize("arguments, message", [
    ({"mode": "walk", "seeds": [4]}, "seeds=[4]: a walk goes from one seed to another: give at least 2"),
    ({"mode": "walk", "out": "w.gif", "fps": 60}, "fps=60: a GIF keeps at most 50 frames per second"),
    ({"mode": "walk", "out": "w.avi"}, "mode=walk writes .gif or .webp or .mp4"),
    ({"mode": "grid", "frames": 10}, "frames=10: a key of mode=walk, not of mode=grid"),
    ({"mode": "classes", "label": 3}, "label=3: mode=grid and mode=walk draw one class"),
    ({"truncation": 0.0}, "truncation=0.0: psi must lie in (0, 1]"),
    ({"truncation": 1.5}, "truncation=1.5: psi must lie in (0, 1]"),
    ({"mode": "sideways"}, "mode=sideways: the modes are grid, walk, classes, nearest"),
    ({"out": "/nonexistent/folder/x.png"}, "the folder /nonexistent/folder does not exist"),
    ({"device": "tpu"}, "device=tpu: cpu, cuda or cuda:N."),
    pytest.param({"device": "cuda"}, "device=cuda: this machine has no CUDA device torch can use",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_bad_arguments_are_one_paragraph_before_the_checkpoint_is_read(tmp_path, arguments, message):
    args = Args(ckpt=str(tmp_path / "missing.ckpt"), **{"out": str(tmp_path / "x.png"), **arguments})
    if "out" in arguments and not arguments["out"].startswith("/"):
        args.out = str(tmp_path / arguments["out"])
    with pytest.raises(UserError, match=re.escape(message)):
        write(args)


def test_what_the_checkpoint_cannot_do_and_outputs_already_there_are_refused(runs, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="mode=classes: .* holds an unconditional generator"):
        write(Args(ckpt=str(runs["mlp"]), mode="classes", out=str(tmp_path / "c.png")))
    (tmp_path / "taken.gif").write_bytes(b"mine")
    with pytest.raises(UserError, match="taken.gif exists: give a new file name, or overwrite=true"):
        write(Args(ckpt=str(runs["mlp"]), mode="walk", out=str(tmp_path / "taken.gif")))
    assert (tmp_path / "taken.gif").read_bytes() == b"mine"
    write(Args(ckpt=str(runs["mlp"]), mode="walk", n=1, frames=2, out=str(tmp_path / "taken.gif"), overwrite=True))
    assert len(frames(tmp_path / "taken.gif")[0]) == 8
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # (root writes anywhere)
        with pytest.raises(UserError, match="is not writable"):
            write(Args(ckpt=str(runs["mlp"]), out=str(locked / "x.png")))
    monkeypatch.setattr(animations, "encoder", lambda: None)
    with pytest.raises(UserError, match="an MP4 needs ffmpeg, and none is installed: pip install imageio-ffmpeg"):
        write(Args(ckpt=str(runs["mlp"]), mode="walk", out=str(tmp_path / "w.mp4")))


def test_grid_png_is_unchanged_by_the_modes(runs, tmp_path):
    """mode=grid writes what torchvision's save_image wrote before the modes existed."""
    from torchvision.utils import save_image

    write(Args(ckpt=str(runs["mlp"]), n=10, seed=4, out=str(tmp_path / "g.png")))
    save_image(generate(load_trained(str(runs["mlp"])).generator, 10, 4), tmp_path / "before.png",
               nrow=math.ceil(math.sqrt(10)), normalize=True, value_range=(-1, 1))
    assert np.array_equal(png(tmp_path / "g.png"), png(tmp_path / "before.png"))


@pytest.fixture(scope="module")
def trained_cgan(tmp_path_factory, mnist_root) -> Path:
    """The conditional MLP of experiment=cgan_mnist after 4000 iterations: digits the classifier reads."""
    from gan.training.fit import fit
    from tests.helpers import make_cfg, quick

    folder = tmp_path_factory.mktemp("cgan")
    fit(make_cfg("experiment=cgan_mnist", *quick("trainer.max_steps=4000", "sample_every=0",
                                                 "callbacks.checkpoint.every_n_train_steps=0"), run_dir=folder))
    return folder


@pytest.mark.slow
def test_the_rows_of_a_trained_cgans_class_sheet_read_as_their_classes(trained_cgan, mnist_classifier):
    net, _ = mnist_classifier
    trained = load_trained(str(trained_cgan))
    wanted, samples = class_rows(trained, Args(ckpt=str(trained_cgan), mode="classes", n=20, seed=3))
    read = net.features(samples.flatten(0, 1))["logits"].argmax(1).reshape(len(wanted), 20)
    agree = (read == torch.tensor(wanted)[:, None]).float()
    assert agree.mean() >= 0.7, agree.mean(1)  # most of the time
    assert read.mode(dim=1).values.tolist() == wanted, read  # each row is read as its own class more than as any other


@pytest.mark.slow
def test_truncation_trades_variety_for_typical_samples_on_a_trained_generator(trained_cgan, mnist_classifier):
    from gan.evaluate import Args as EvaluateArgs
    from gan.evaluate import evaluate

    net, _ = mnist_classifier
    generator = load_trained(str(trained_cgan)).generator
    def spread(psi: float) -> float:  # within each class (across classes, sharper digits spread the classes apart)
        return sum(net.features(generate(truncated(generator, psi), 300, seed=1, label=c))["hidden"].std(0).mean().item()
                   for c in range(10)) / 10

    spreads = [spread(psi) for psi in (1.0, 0.8, 0.6, 0.4, 0.2)]
    assert all(a > b for a, b in zip(spreads, spreads[1:])), spreads  # the spread in feature space falls with psi
    scores = {psi: evaluate(EvaluateArgs(ckpt=str(trained_cgan), n=2000, memorisation=0, truncation=psi, track=False))
              for psi in (1.0, 0.4)}
    assert scores[0.4]["truncation"] == 0.4 and "truncation" not in scores[1.0]
    assert scores[0.4]["precision"] > scores[1.0]["precision"], scores  # more typical samples
    assert scores[0.4]["recall"] < scores[1.0]["recall"], scores  # less of the data covered
