"""Inception-v3 features (the network of the original TF FID, as torch-fidelity ports it) from a
weights file: `callbacks.metrics.protocol=fid10k_test callbacks.metrics.inception_weights=<file>`.

The file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, which torch-fidelity publishes
as `weights-inception-2015-12-05-6726825d.pth` (the same tensors): either name is looked for in
torch hub's checkpoint folder and this project's cache when no path is given, and
`inception_weights=download` fetches it with torch hub's downloader (torch-fidelity's own) into
the cache. Nothing else downloads: offline without the file, the run stops saying what to fetch.
The file is read as tensors only (torch-fidelity would unpickle it, which runs whatever code a
crafted file names).

Images are quantised to uint8 as a saved PNG would be, grey repeated to three channels, then
resized to 299x299 in one of two ways: `legacy`, the TF1 bilinear resize of the original FID code
(torch-fidelity's exact port), on the device; `clean`, clean-fid's anti-aliased bicubic resize of
each channel in float (PIL's, so that it matches clean-fid exactly), on the CPU."""

from __future__ import annotations

import io
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import torch

from gan.cache import cache_dir
from gan.errors import UserError
from gan.files import digest

NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")  # pytorch-fid's, torch-fidelity's
URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
SIZE = 299  # the network's input


def weights_folder() -> Path:
    return cache_dir() / "inception"


def folders() -> tuple[Path, Path]:
    """Where a weights file may already lie: this project's cache and torch hub's checkpoints."""
    return weights_folder(), Path(torch.hub.get_dir()) / "checkpoints"


def known_places() -> list[Path]:
    return [folder / name for folder in folders() for name in NAMES]


def find_weights(weights: str | None) -> Path:
    """The weights file `inception_weights` names: a path, `download`, or null (a known place).
    Stops with what to do when there is none."""
    if weights == "download":
        return download()
    if weights:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
    else:
        found = [p for p in known_places() if p.is_file()]
        if found:
            return found[0]
    raise UserError(
        f"The Inception-v3 features need their weights on disk, and inception_weights={weights} "
        f"{'is not a file' if weights else 'names none and neither name lies in ' + ' or '.join(map(str, folders()))}. "
        f"Where you are online, set inception_weights=download (fetched once into {weights_folder()}), or download "
        f"pytorch-fid's {NAMES[0]} (torch-fidelity's {NAMES[1]}: the same file) and point "
        f"callbacks.metrics.inception_weights (gan.evaluate: inception_weights=) at it; or use a classifier protocol "
        f"(classifier10k_test: works offline).")


def download() -> Path:
    """torch-fidelity's file into the cache, by torch hub's downloader (its hash checked)."""
    target = weights_folder() / NAMES[1]
    if not target.is_file():
        try:
            torch.hub.load_state_dict_from_url(URL, model_dir=str(weights_folder()), check_hash=True,
                                               progress=False, weights_only=True)
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"inception_weights=download: {URL} could not be fetched ({exc}). Offline, download "
                            f"{NAMES[1]} elsewhere and give its path as inception_weights=.") from None
    return target


def check(weights: str | None) -> Path:
    """The weights file and torch-fidelity, or a message saying what to do: before anything is built."""
    path = find_weights(weights)
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise UserError('The Inception-v3 features need torch-fidelity: pip install -e ".[inception]"') from None
    return path


class InceptionFeatures:
    """The 2048-d pool features (FID, KID, precision/recall) and the 1008-way logits without bias
    (IS) of torch-fidelity's network, after the `resize` of the protocol."""

    def __init__(self, weights: str | None, resize: str = "legacy"):
        if resize not in ("legacy", "clean"):
            raise ValueError(f"resize must be legacy or clean, got {resize!r}")
        self.path = check(weights)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=tensors_only(self.path))
        self.resize = resize
        self.identity = f"inception-{digest(self.path)[:12]}"  # the file's content, whatever its name

    def layers(self) -> list[torch.nn.Module]:
        """The network's blocks in the order its forward pass runs them (their order of definition)."""
        return [m for name, m in self.net.named_children() if name not in ("AvgPool", "fc")]

    def resized(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (3 channels) -> float NCHW at 299x299 in [0, 255]."""
        if self.resize == "legacy":
            from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

            return interpolate_bilinear_2d_like_tensorflow1x(pixels.float(), size=(SIZE, SIZE), align_corners=False)
        return clean_resize(pixels).to(pixels.device)

    @torch.no_grad()
    def features(self, images: torch.Tensor, device: torch.device | str = "cpu",
                 batch_size: int = 100) -> dict[str, torch.Tensor]:
        """Of uint8 images or floats in [-1, 1], a batch at a time on `device`; returned on the CPU."""
        self.net.to(device)
        pool, logits = [], []
        for chunk in images.split(batch_size):
            pixels = chunk if chunk.dtype == torch.uint8 else ((chunk.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            a, b = self.network(self.resized(pixels.to(device).expand(-1, 3, -1, -1)))  # grey repeated; colour as it is
            pool.append(a.cpu())
            logits.append(b.cpu())
        pool_features = torch.cat(pool)
        return {"conv": pool_features, "hidden": pool_features, "logits": torch.cat(logits)}

    @torch.no_grad()
    def network(self, resized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features and unbiased logits of images already at 299x299, floats in [0, 255]
        (scaled as the TF graph does: (x - 128) / 128)."""
        x = (resized - 128) / 128
        for layer in self.layers():
            x = layer(x)
        features = self.net.AvgPool(x).flatten(1)
        return features, features @ self.net.fc.weight.T  # torch-fidelity's logits_unbiased


def clean_resize(pixels: torch.Tensor) -> torch.Tensor:
    """clean-fid's resize: each channel as a float image, PIL's bicubic to 299x299, clipped to [0, 255]."""
    from PIL import Image

    array = pixels.cpu().numpy()
    out = np.empty((*array.shape[:2], SIZE, SIZE), dtype=np.float32)
    grey = bool((array == array[:, :1]).all())  # three equal channels: resize one
    for i in range(array.shape[0]):
        for c in range(1 if grey else array.shape[1]):
            channel = Image.fromarray(array[i, c].astype(np.float32))  # mode F
            out[i, c] = np.asarray(channel.resize((SIZE, SIZE), resample=Image.BICUBIC)).clip(0, 255)
        if grey:
            out[i, 1:] = out[i, 0]
    return torch.from_numpy(out)


def tensors_only(path: Path) -> io.BytesIO:
    """The weights file re-serialized from what `weights_only=True` read: torch-fidelity unpickles
    what it is given, and this holds nothing but the tensors."""
    from gan.run.checkpoints.files import read

    try:
        state = read(path)
    except UserError:
        raise
    except pickle.UnpicklingError:
        raise UserError(f"inception_weights={path}: refused: it holds Python objects besides tensors, and loading it "
                        f"could run code. Use {NAMES[0]} as pytorch-fid and torch-fidelity publish it.") from None
    except Exception as exc:
        raise UserError(f"inception_weights={path}: not a readable weights file ({type(exc).__name__}).") from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer
