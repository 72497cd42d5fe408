"""What travels with an exported generator (gan.export): a JSON file beside it, `<file>.json`,
saying what the network expects and gives (the noise's distribution and size, the labels and
their class names, the image shape and value range, the inputs' and output's names) and where it
came from; for safetensors also the generator's config, from which this project rebuilds it.

A generator exported as safetensors loads back here like a checkpoint (gan.generate
ckpt=<file>.safetensors): the weights through safetensors (tensors only, nothing unpickled), the
config as data checked against what conf/ offers (gan/config/untrusted.py), as a checkpoint's is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gan.config.untrusted import CONF, file_config, shown
from gan.errors import UserError

NOISE_LAW = {"normal": "z ~ N(0, I): torch.randn(batch, latent_dim)",
             "uniform": "z ~ U(-1, 1): torch.rand(batch, latent_dim) * 2 - 1"}


def sidecar(path: str | Path) -> Path:
    """The JSON beside an exported file: `g.onnx` -> `g.onnx.json`."""
    return Path(f"{path}.json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    where = sidecar(path)
    try:
        value = json.loads(where.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: its description {where.name} is not beside it; gan.export writes the two together, "
                        f"and the generator cannot be rebuilt without it.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: not a readable description of an exported generator ({type(exc).__name__}).") from None
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        raise UserError(f"{where}: it holds no generator config (`config`): it was not written by gan.export.")
    return value


def load_safetensors(path: str | Path, conf_dirs: tuple[Path, ...] = (CONF,)):
    """The generator of a .safetensors written by gan.export, rebuilt through the project."""
    from gan.run.checkpoints.files import Trained, generator_of

    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise UserError(f"{path}: reading safetensors needs the safetensors package: pip install -e \".[export]\".") from None
    about = read_sidecar(path)
    config = file_config({"resolved_config": about["config"]}, str(sidecar(path)), conf_dirs)
    try:
        weights = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {shown(str(exc), 160)}).") from None
    generator = generator_of(config, weights, str(path))
    names = about.get("class_names")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == (generator.num_classes or 0) else \
        None if generator.num_classes is None else [str(i) for i in range(generator.num_classes)]
    source = about.get("source") if isinstance(about.get("source"), dict) else {}
    step = source.get("step")
    return Trained(generator, config, str(path), step if isinstance(step, int) else -1, names, bool(source.get("ema")))
