"""gan.export: the seed MLP, a DCGAN and a conditional EMA generator round trip through
onnxruntime, a fresh interpreter that imports torch alone, and safetensors back into the project."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gan.errors import UserError
from gan.export import Args, export
from gan.run.checkpoints.files import load_trained
from tests.helpers import CONDITIONAL_CKPT as CONDITIONAL
from tests.helpers import ROOT

FRESH = """
import sys, numpy, torch
noise = torch.from_numpy(numpy.load(sys.argv[2]))
inputs = (noise,) if len(sys.argv) < 4 else (noise, torch.from_numpy(numpy.load(sys.argv[3])))
with torch.no_grad():
    images = torch.jit.load(sys.argv[1])(*inputs)
numpy.save(sys.argv[1] + ".out.npy", images.numpy())
print(sorted(name for name in sys.modules if name.split(".")[0] in ("gan", "pytorch_lightning", "hydra")))
"""


def checkpoints(runs) -> dict[str, str]:
    return {"mlp": str(runs["mlp"]), "dcgan": str(runs["dcgan"]), "conditional": str(CONDITIONAL)}


def fixed(generator, n: int = 16, seed: int = 99) -> tuple[torch.Tensor, ...]:
    z = generator.draw_noise(n, torch.Generator().manual_seed(seed))
    return (z,) if generator.num_classes is None else (z, torch.arange(n) % generator.num_classes)


@pytest.mark.parametrize("name", ["mlp", "dcgan", "conditional"])
def test_onnx_runs_in_onnxruntime_with_any_batch_and_says_what_it_expects(runs, tmp_path, name):
    onnxruntime = pytest.importorskip("onnxruntime")
    ckpt = checkpoints(runs)[name]
    result = export(Args(ckpt=ckpt, format="onnx", out=str(tmp_path / "g.onnx")))
    assert result["checked_by"] == "onnxruntime" and result["max_difference"] <= 1e-4
    trained = load_trained(ckpt)
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    about = json.loads((tmp_path / "g.onnx.json").read_text())
    assert [i.name for i in session.get_inputs()] == list(about["inputs"]) and about["outputs"] == {
        "images": {"shape": ["batch", *about["image_shape"]], "dtype": "float32"}}
    for n in (16, 3):  # the batch is dynamic
        inputs = fixed(trained.generator, n)
        got = session.run(["images"], {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)})[0]
        with torch.no_grad():
            expected = trained.generator(*inputs).numpy()
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4
    generator = trained.generator
    assert about["latent_dim"] == generator.latent_dim and about["noise"] == generator.noise
    assert about["image_shape"] == [1, 28, 28] and about["value_range"] == [-1, 1]
    assert about["source"]["step"] == trained.step and about["source"]["ema"] == (name == "conditional")
    if name == "conditional":
        assert about["num_classes"] == 10 and about["class_names"][3] == "3 - three"
        assert about["inputs"]["labels"]["dtype"] == "int64"
    else:
        assert about["num_classes"] is None and "labels" not in about["inputs"]
    assert about["noise"] == ("uniform" if name == "dcgan" else "normal")


@pytest.mark.parametrize("name", ["mlp", "dcgan", "conditional"])
def test_torchscript_loads_in_a_fresh_interpreter_with_torch_alone(runs, tmp_path, name):
    ckpt = checkpoints(runs)[name]
    result = export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "g.pt")))
    assert result["checked_by"] == "torch.jit.load" and result["max_difference"] <= 1e-4
    trained = load_trained(ckpt)
    inputs = fixed(trained.generator)
    paths = [str(tmp_path / f"input{i}.npy") for i in range(len(inputs))]
    for path, x in zip(paths, inputs):
        np.save(path, x.numpy())
    fresh = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "g.pt"), *paths], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert fresh.stdout.strip().splitlines()[-1] == "[]"  # nothing of this project (or its frameworks) was imported
    with torch.no_grad():
        expected = trained.generator(*inputs).numpy()
    assert np.abs(np.load(tmp_path / "g.pt.out.npy") - expected).max() <= 1e-4


@pytest.mark.parametrize("name", ["mlp", "dcgan", "conditional"])
def test_safetensors_rebuild_the_generator_bit_for_bit(runs, tmp_path, name):
    from safetensors.torch import load_file

    ckpt = checkpoints(runs)[name]
    out = tmp_path / "g.safetensors"
    export(Args(ckpt=ckpt, format="safetensors", out=str(out)))
    original = load_trained(ckpt)
    weights = load_file(str(out))
    assert weights.keys() == original.generator.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in original.generator.state_dict().items())
    rebuilt = load_trained(str(out))
    assert type(rebuilt.generator) is type(original.generator) and rebuilt.class_names == original.class_names
    inputs = fixed(original.generator)
    with torch.no_grad():
        assert torch.equal(rebuilt.generator(*inputs), original.generator(*inputs))
    # and the project's tools take it as they take a checkpoint
    made = subprocess.run([sys.executable, "-m", "gan.generate", f"ckpt={out}", "n=4", f"out={tmp_path / 's.npy'}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)


def test_an_export_description_from_elsewhere_builds_only_what_conf_offers(runs, tmp_path):
    out = tmp_path / "g.safetensors"
    export(Args(ckpt=checkpoints(runs)["mlp"], format="safetensors", out=str(out)))
    about = json.loads((tmp_path / "g.safetensors.json").read_text())
    about["config"]["model"]["generator"]["_target_"] = "os.system"
    (tmp_path / "g.safetensors.json").write_text(json.dumps(about))
    with pytest.raises(UserError, match=r"refused: `model.generator._target_=os.system` is not what conf/ offers"):
        load_trained(str(out))
    (tmp_path / "g.safetensors.json").unlink()
    with pytest.raises(UserError, match="its description g.safetensors.json is not beside it"):
        load_trained(str(out))


def test_bad_exports_are_refused_in_one_paragraph_and_write_nothing(runs, tmp_path, monkeypatch):
    ckpt = checkpoints(runs)["mlp"]
    with pytest.raises(UserError, match="format=tflite: the formats are onnx, torchscript, safetensors"):
        export(Args(ckpt=ckpt, format="tflite"))
    with pytest.raises(UserError, match=r"out=.*g.onnx: a torchscript export is written as .pt"):
        export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "g.onnx")))
    (tmp_path / "taken.pt").write_bytes(b"mine")
    with pytest.raises(UserError, match="taken.pt exists: give a new out=, or overwrite=true"):
        export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "taken.pt")))
    assert (tmp_path / "taken.pt").read_bytes() == b"mine"
    export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "taken.pt"), overwrite=True))
    assert (tmp_path / "taken.pt").read_bytes() != b"mine"
    with pytest.raises(UserError, match="is not a folder you can write to"):
        export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "no" / "such" / "g.pt")))

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(UserError, match=r"format=onnx needs onnxscript, which is not installed: pip install -e \"\.\[export\]\""):
        export(Args(ckpt=ckpt, format="onnx", out=str(tmp_path / "g.onnx")))
    monkeypatch.setattr(importlib.util, "find_spec", real)

    import gan.export as command

    def wrong(fmt, path, inputs, about, dirs):  # an exporter that got the network wrong
        return torch.zeros(16, 1, 28, 28)

    monkeypatch.setattr(command, "read_back", wrong)
    with pytest.raises(UserError, match="the export read back gives images up to .* nothing was written"):
        export(Args(ckpt=ckpt, format="torchscript", out=str(tmp_path / "wrong.pt")))
    assert not list(tmp_path.glob("wrong.pt*")) and not list(tmp_path.glob(".wrong.pt*"))
