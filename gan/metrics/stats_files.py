"""Reference statistics as `.npz` files, in the format pytorch-fid and clean-fid read: `mu` (the
mean feature) and `sigma` (their covariance), float64; beside them, as strings, what produced them
(protocol, feature network and its weights' hash, resize, data set, image count).

A file from elsewhere (published statistics, another tool's) has only `mu` and `sigma`: it is
scored against as it is, with a note that its provenance cannot be checked. A file that says
what produced it is refused when that differs from the protocol's network or resize; a file of
the wrong feature size always is. Read with `allow_pickle=False`: nothing in it runs."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from gan.errors import UserError
from gan.files import write_atomically

log = logging.getLogger(__name__)
CHECKED = ("features", "resize")  # provenance that must match the protocol for the numbers to compare


def write_stats(path: str | Path, mu: torch.Tensor, sigma: torch.Tensor, provenance: dict[str, str]) -> None:
    arrays = {"mu": mu.double().numpy(), "sigma": sigma.double().numpy(), **{k: np.array(str(v)) for k, v in provenance.items()}}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, lambda f: f.write(buffer.getvalue()))


def read_stats(path: str | Path, dim: int, expected: dict[str, str], key: str = "ref") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(mu, sigma, provenance) of a file, checked against the features it is to be compared with."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
    except FileNotFoundError:
        raise UserError(f"{key}={path}: no such file (reference statistics are a .npz of mu and sigma; "
                        f"python -m gan.evaluate stats writes one).") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{key}={path}: not a readable .npz of reference statistics ({type(exc).__name__}: {exc}).") from None
    if "mu" not in arrays or "sigma" not in arrays:
        raise UserError(f"{key}={path}: holds {', '.join(sorted(arrays)) or 'nothing'}, and reference statistics need "
                        f"mu and sigma (the format pytorch-fid and clean-fid write).")
    mu, sigma = arrays.pop("mu"), arrays.pop("sigma")
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise UserError(f"{key}={path}: its statistics are of {mu.shape[0] if mu.ndim == 1 else mu.shape}-d features "
                        f"(sigma {sigma.shape}), and this protocol's network gives {dim}-d ones ({expected['features']}): "
                        f"they cannot be compared. Use statistics of the same network (Inception-v3's pool features are "
                        f"2048-d), or write them with python -m gan.evaluate stats.")
    provenance = {name: str(value) for name, value in arrays.items() if value.dtype.kind == "U" and value.ndim == 0}
    wrong = [f"{name} {provenance[name]} (this protocol: {expected[name]})" for name in CHECKED
             if name in provenance and provenance[name] != expected[name]]
    if wrong:
        raise UserError(f"{key}={path} was computed with {', '.join(wrong)}: an FID against it would not compare with "
                        f"this protocol's. Write statistics with the same network and resize (python -m gan.evaluate "
                        f"stats protocol=...), or choose the protocol the file was made for ({provenance.get('protocol', '?')}).")
    if not provenance:
        log.warning("%s=%s says nothing of what produced it: make sure it holds %s features after the %s resize.",
                    key, path, expected["features"], expected["resize"])
    return torch.from_numpy(mu).double(), torch.from_numpy(sigma).double(), provenance
