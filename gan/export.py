"""Ship a trained generator to something that is not this project.

`python -m gan.export ckpt=<run or .ckpt> format=onnx out=generator.onnx` writes the generator
(the weight average, where the run kept one) in a format that runs without this project:
- onnx: inputs `noise` (batch x latent_dim, float32) and, for a conditional generator, `labels`
  (batch, int64); output `images` (batch x C x H x W, float32 in [-1, 1]); the batch dimension is
  dynamic. Runs in onnxruntime or any ONNX runtime. Needs the onnx and onnxscript packages.
- torchscript: `torch.jit.load(path)(noise[, labels])` in any Python with torch alone (PyTorch
  has deprecated TorchScript, but still loads it).
- safetensors: the weights (`safetensors.torch.load_file`); this project rebuilds the generator
  from them and the JSON beside them, bit for bit (gan.generate ckpt=<file>.safetensors).
Beside every export, `<out>.json` says what it expects and gives: the noise's distribution and
size, the labels and class names, the image shape and value range, the inputs' and output's
names, and the checkpoint it came from. The export is checked before it is kept: read back (by
onnxruntime where installed, torch.jit.load, safetensors), it must give the generator's images
for 16 fixed noise vectors to 1e-4, or nothing is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from gan.config.cli import run
from gan.config.untrusted import config_dirs
from gan.errors import UserError
from gan.files import digest, write_json, write_through
from gan.run.checkpoints.exported import NOISE_LAW, sidecar
from gan.run.checkpoints.files import Trained, load_trained

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
NEEDS = {"onnx": ("onnx", "onnxscript"), "safetensors": ("safetensors",)}  # the packages each format is written with
TOLERANCE = 1e-4  # the largest difference from the generator's own images an export may show
CHECK_SEED, CHECK_N = 1234, 16  # the fixed noise every export is checked on (a batch other than the one traced)
CHECKED_BY = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "safetensors": "safetensors + this project"}


@dataclass
class Args:
    ckpt: str = "???"  # a .ckpt file, or a run folder (its checkpoints/last.ckpt)
    format: str = "???"  # onnx | torchscript | safetensors
    out: Optional[str] = None  # the file to write (null: generator.onnx, generator.pt or generator.safetensors)
    best: bool = False  # with a run folder: its best-FID checkpoint instead of last.ckpt
    ema: bool = True  # a run with gan.ema_decay: the weight average (false: the trained generator)
    opset: Optional[int] = None  # onnx: the ONNX opset (null: the exporter's default)
    overwrite: bool = False  # replace `out` (and its .json) if they exist (false: refuse)
    config_dir: Optional[str] = None  # your own config folder, whose options' classes may be rebuilt too (as --config-dir)


def checked(args: Args) -> Path:
    """The output path; a format, a package or a path that cannot work is said before anything is loaded."""
    if args.format not in FORMATS:
        raise UserError(f"format={args.format}: the formats are {', '.join(FORMATS)}.")
    missing = [name for name in NEEDS.get(args.format, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"format={args.format} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed: pip install -e \".[export]\" (or pip install {' '.join(missing)}).")
    out = Path(args.out or f"generator{FORMATS[args.format]}").expanduser()
    if out.suffix != FORMATS[args.format]:
        raise UserError(f"out={out}: a {args.format} export is written as {FORMATS[args.format]}.")
    for path in (out, sidecar(out)):
        if os.path.lexists(path) and not (args.overwrite and path.is_file()):
            what = "is a folder" if path.is_dir() else "exists" if path.exists() else "is a link to nowhere"
            raise UserError(f"{path} {what}: give a new out=, or overwrite=true to replace the export there.")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UserError(f"out={out}: {folder} is not a folder you can write to.")
    return out


def example(trained: Trained, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Fixed inputs: noise of the generator's own law, and the classes in turn for a conditional one."""
    generator = trained.generator
    z = generator.draw_noise(n, torch.Generator().manual_seed(seed))
    return (z,) if generator.num_classes is None else (z, torch.arange(n) % generator.num_classes)


def quietly():
    """The exporters' progress lines and deprecation notices, kept off the console."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def write_onnx(trained: Trained, path: Path, opset: int | None) -> None:
    inputs = example(trained, 2, 0)
    names = ["noise", "labels"][:len(inputs)]
    batch = torch.export.Dim("batch")
    with quietly():
        torch.onnx.export(trained.generator, inputs, str(path), dynamo=True, input_names=names, output_names=["images"],
                          dynamic_shapes=tuple({0: batch} for _ in inputs), opset_version=opset, external_data=False)


def write_torchscript(trained: Trained, path: Path) -> None:
    with quietly(), torch.no_grad():
        traced = torch.jit.trace(trained.generator, example(trained, 2, 0), check_trace=False)
        torch.jit.save(traced, str(path))


def write_safetensors(trained: Trained, path: Path) -> None:
    from safetensors.torch import save

    path.write_bytes(save({k: v.contiguous() for k, v in trained.generator.state_dict().items()}))


def read_back(fmt: str, path: Path, inputs: tuple[torch.Tensor, ...], about: dict, dirs: tuple[Path, ...]) -> torch.Tensor | None:
    """The exported file's images for `inputs`, as what a user would run it with runs it (None:
    onnxruntime, which runs an ONNX file here, is not installed)."""
    if fmt == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        return torch.from_numpy(session.run(["images"], feeds)[0])
    if fmt == "torchscript":
        with torch.no_grad(), quietly():
            return torch.jit.load(str(path))(*inputs)
    from gan.run.checkpoints.exported import load_safetensors  # safetensors: rebuilt by the project, as a user would

    write_json(sidecar(path), about)
    try:
        rebuilt = load_safetensors(path, dirs).generator
    finally:
        sidecar(path).unlink(missing_ok=True)
    with torch.no_grad():
        return rebuilt(*inputs)


def description(trained: Trained, fmt: str, path: Path) -> dict:
    generator = trained.generator
    with torch.no_grad():
        shape = list(generator(*example(trained, 1, 0)).shape[1:])
    node = trained.config.node("model.generator")
    inputs = {"noise": {"shape": ["batch", generator.latent_dim], "dtype": "float32", "law": NOISE_LAW[generator.noise]}}
    if generator.num_classes is not None:
        inputs["labels"] = {"shape": ["batch"], "dtype": "int64", "values": f"0 to {generator.num_classes - 1}"}
    return {
        "format": fmt, "file": path.name,
        "noise": generator.noise, "latent_dim": generator.latent_dim,
        "num_classes": generator.num_classes, "class_names": trained.class_names,
        "image_shape": shape, "value_range": [-1, 1],
        "inputs": inputs, "outputs": {"images": {"shape": ["batch", *shape], "dtype": "float32"}},
        "usage": usage(fmt, generator.num_classes is not None),
        "config": {"model": {"generator": node}},
        "source": {"checkpoint": str(Path(trained.path).resolve()), "step": trained.step, "ema": trained.ema,
                   "sha256": digest(Path(trained.path))},
        "torch": torch.__version__,
    }


def usage(fmt: str, conditional: bool) -> str:
    call = "noise, labels" if conditional else "noise"
    return {"onnx": f"onnxruntime.InferenceSession(file).run(['images'], {{'noise': z{', ' if conditional else ''}"
                    f"{chr(39) + 'labels' + chr(39) + ': y' if conditional else ''}}})[0]",
            "torchscript": f"torch.jit.load(file)({call})",
            "safetensors": "python -m gan.generate ckpt=<file> (this project), or safetensors.torch.load_file(file) for the "
                           "weights of the network `config` describes"}[fmt]


def export(args: Args) -> dict:
    out = checked(args)
    trained = load_trained(args.ckpt, args.best, args.ema, config_dirs(args.config_dir))
    trained.generator.eval()
    writer = {"onnx": lambda tmp: write_onnx(trained, tmp, args.opset),
              "torchscript": lambda tmp: write_torchscript(trained, tmp),
              "safetensors": lambda tmp: write_safetensors(trained, tmp)}[args.format]
    inputs = example(trained, CHECK_N, CHECK_SEED)
    with torch.no_grad():
        expected = trained.generator(*inputs)
    about = description(trained, args.format, out)
    verdict = {}

    def make(tmp: Path) -> None:
        try:
            writer(tmp)
        except UserError:
            raise
        except Exception as exc:  # what the exporter could not trace or translate
            raise UserError(f"format={args.format}: {type(trained.generator).__name__} could not be exported "
                            f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}).") from None
        got = read_back(args.format, tmp, inputs, about, config_dirs(args.config_dir))
        if got is None:
            verdict.update(checked_by=None)
            return
        error = (got.float() - expected.float()).abs().max().item()
        verdict.update(checked_by=CHECKED_BY[args.format], max_difference=error)
        if not error <= TOLERANCE:
            raise UserError(f"format={args.format}: the export read back gives images up to {error:.3g} away from the "
                            f"generator's own (more than {TOLERANCE:g}); nothing was written.")

    write_through(out, make)
    about["check"] = {"noise_seed": CHECK_SEED, "n": CHECK_N, "tolerance": TOLERANCE, **verdict}
    write_json(sidecar(out), about)
    checked_by = verdict.get("checked_by")
    print(f"{out}: {args.format} of {type(trained.generator).__name__} from {trained.path} (iteration {trained.step}"
          f"{', weight average' if trained.ema else ''}); " + (
              f"read back by {checked_by}: largest difference {verdict['max_difference']:.2g} on {CHECK_N} fixed noise "
              f"vectors" if checked_by else "not read back (onnxruntime is not installed here)")
          + f"; what it expects: {sidecar(out)}", file=sys.stderr)
    return {"out": str(out), "description": str(sidecar(out)), **verdict}


def main() -> None:
    print(json.dumps(run(export, Args, __doc__)))


if __name__ == "__main__":
    main()
