"""Bad input to the commands, as a user types it: each is one paragraph naming the key or file
and what to do, and a non-zero exit, never a traceback. (train.py's config errors are in
tests/training/test_schema.py, bad checkpoints and folders in tests/training/test_train.py.) And the help they print."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from gan import bench, evaluate, generate, report
from gan.training.fit import fit
from tests.helpers import ROOT, make_cfg, quick


@pytest.fixture(scope="module")
def run_folder(mnist_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    fit(make_cfg(*quick("trainer.max_steps=2", "sample_every=2"), run_dir=folder))
    return folder


def command_error(main, argv: list[str], monkeypatch, capsys) -> str:
    """Run a command's main() with `argv`; its exit message (or stderr), which must be one paragraph."""
    monkeypatch.setattr(sys, "argv", ["gan", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    message = exit_.value.code if isinstance(exit_.value.code, str) else capsys.readouterr().err
    assert exit_.value.code != 0 and exit_.value.code is not None
    assert "Traceback" not in message and len(message.strip().splitlines()) == 1, message
    return message


EVALUATE = [
    ("n=0", "n=0: the scores need more samples"),
    ("n=-3", "n=-3: the scores need more samples"),
    ("n=1", "n=1: the scores need more samples than k=3"),
    ("k=0", "k=0: precision and recall need at least 1 neighbour"),
    ("k=-1", "k=-1: precision and recall need at least 1 neighbour"),
    ("seed=-1", "seed=-1: the evaluation noise seed must be 0 or more"),
    ("protocol=fid10k_val", "protocol=fid10k_val is not an evaluation protocol: a protocol reads <family><count>_<reference>"),
    ("features=inception", "Key 'features' not in 'Args'"),  # the protocol names the network now
    ("memorisation=-1", "memorisation=-1: the number of samples checked for copies"),
    ("ref=/no/such.npz", "ref=/no/such.npz: no such file (reference statistics are a .npz of mu and sigma"),
    ("n=abc", "Value 'abc' of type 'str' could not be converted to Integer full_key: n"),
    ("nosuch=1", "Key 'nosuch' not in 'Args'"),
    ("best=true", "no checkpoint there (give a .ckpt file or a run folder holding checkpoints/best_fid.ckpt)"),
]


@pytest.mark.parametrize("arg, expected", EVALUATE, ids=[a for a, _ in EVALUATE])
def test_bad_evaluate_arguments(arg, expected, run_folder, monkeypatch, capsys):
    message = command_error(evaluate.main, [f"ckpt={run_folder}", arg], monkeypatch, capsys)
    assert expected in message


GENERATE = [
    ("out=/proc/no/such/x.png", "out=/proc/no/such/x.png: the folder /proc/no/such does not exist"),
    ("out=grid.txt", "out=grid.txt: mode=grid writes .png or .npy (got .txt)"),
    ("n=0", "n=0: how many samples (mode=classes: columns), 1 or more"),
    ("mode=classes", "holds an unconditional generator (model.conditional=false): it has no classes to show"),
    ("label=3", "label=3: this generator is not conditional"),
    ("n=abc", "could not be converted to Integer full_key: n"),
]


@pytest.mark.parametrize("arg, expected", GENERATE, ids=[a for a, _ in GENERATE])
def test_bad_generate_arguments(arg, expected, run_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    message = command_error(generate.main, [f"ckpt={run_folder}", arg], monkeypatch, capsys)
    assert expected in message


@pytest.mark.parametrize("main", [evaluate.main, generate.main], ids=["evaluate", "generate"])
@pytest.mark.parametrize("ckpt", ["/no/such/run", "missing"], ids=["no-such-path", "no-ckpt-argument"])
def test_a_missing_checkpoint_is_named(main, ckpt, monkeypatch, capsys):
    argv = [] if ckpt == "missing" else [f"ckpt={ckpt}"]
    message = command_error(main, argv, monkeypatch, capsys)
    assert ("/no/such/run: no checkpoint there" in message) if argv else ("ckpt" in message)


def test_report_of_a_folder_without_jobs_or_that_does_not_exist(tmp_path, monkeypatch, capsys):
    for folder in (tmp_path, tmp_path / "nope"):
        message = command_error(report.main, [f"sweep={folder}"], monkeypatch, capsys)
        assert f"{folder}: no sweep jobs there" in message


@pytest.mark.parametrize("args, expected", [
    (["out=x.png"], "out=x.png: reference statistics are written as .npz"),
    (["out=a.npz", "protocol=fid50k"], "protocol=fid50k is not an evaluation protocol"),
    (["out=a.npz", "data=nosuch"], "Could not find 'data/nosuch'"),
    (["protocol=classifier10k_test"], "missing mandatory value: out full_key: out object_type=StatsArgs. Usage: python -m "
                                      "gan.evaluate stats out=<out> [data=mnist]"),
    (["out=a.npz", "data.nosuch=1"], "Could not override 'data.nosuch'"),
])
def test_bad_stats_arguments_are_one_paragraph(args, expected, monkeypatch, capsys):
    assert expected in command_error(evaluate.main, ["stats", *args], monkeypatch, capsys)


@pytest.mark.parametrize("arg", ["models=dcgan,stylegan", "seeds=1,two", "minutes=0", "sweeps=[/no/such/folder]"])
def test_bad_equal_time_arguments_are_one_paragraph(arg, monkeypatch, capsys):
    message = command_error(bench.main, ["mode=equal_time", arg], monkeypatch, capsys)
    assert f"{arg.split('=')[0]}=" in message and "mode=equal_time takes models among dcgan, sngan_resnet, r3gan" in message


@pytest.mark.parametrize("command, flag", [("gan.evaluate", "--help"), ("gan.generate", "-h")])
def test_the_small_commands_print_every_option_with_its_meaning_and_default(command, flag):
    done = subprocess.run([sys.executable, "-m", command, flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    usage = lines[0]
    assert usage.startswith(f"usage: python -m {command} ckpt=<ckpt> [")
    for field in fields(importlib.import_module(command).Args):
        assert f"{field.name}=" in usage
        [row] = [line for line in lines if line.startswith(f"  {field.name} ")]
        assert len(row.split()) > 2  # the option, its meaning ...
        assert field.name == "ckpt" or "(default: " in row  # ... and its default


def test_train_help_lists_every_group_option_and_run_option_without_loading_torch():
    code = ("import runpy, sys; sys.argv = ['train.py', '--help']; runpy.run_path('train.py', run_name='__main__'); "
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("usage: python train.py") and out.rstrip().endswith("no torch")  # answers at once
    main = OmegaConf.load(ROOT / "conf" / "train.yaml")
    for entry in main.defaults[1:]:
        [(group, default)] = entry.items()
        assert f"\n  {group}: " in out
        for option in (ROOT / "conf" / group).glob("*.yaml"):
            mark = " *" if option.stem == default else ""
            assert re.search(rf"^    {option.stem}{re.escape(mark)}\s+\S", out, re.MULTILINE), option  # with its meaning
    nodes = ("gan", "schedule")  # their keys are listed one by one
    listed = [k for k in main if k not in ("defaults", "hydra", *nodes, "run_dir")] + [f"{n}.{k}" for n in nodes for k in main[n]]
    for key in listed:
        assert re.search(rf"^  {re.escape(key)}=\S+\s+\S", out, re.MULTILINE), key
    assert "gan:" not in out.split("run options")[1]  # no YAML dump
