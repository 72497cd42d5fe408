"""Inception-v3 features (the network of the original TF FID, via torch-fidelity) from a local
weights file, for users who have one: `callbacks.metrics.features=inception callbacks.metrics.inception_weights=<file>`.

Nothing is downloaded: without the file the run stops with a message saying what to fetch.
The file is read here as tensors only (torch-fidelity itself would unpickle it, which runs
whatever code a crafted file names). Grey images are repeated to three channels and scaled to
uint8, as torch-fidelity expects; it resizes them to 299x299 itself.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from gan.errors import UserError

WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


class InceptionFeatures:
    def __init__(self, weights: str | None):
        self.check(weights)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=tensors_only(Path(weights).expanduser()))

    @staticmethod
    def check(weights: str | None) -> None:
        """Stop with what to do when the weights file or torch-fidelity is missing."""
        if not weights or not Path(weights).expanduser().is_file():
            raise UserError(
                f"callbacks.metrics.features=inception needs the Inception-v3 weights on disk, and "
                f"inception_weights={weights} is not a file. Where you are online, download torch-fidelity's {WEIGHTS} "
                f"and point callbacks.metrics.inception_weights (gan.evaluate: inception_weights=) at it, "
                f"or use features=classifier (works offline)."
            )
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise UserError('features=inception needs torch-fidelity: pip install -e ".[inception]"') from None

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 100) -> dict[str, torch.Tensor]:
        """Of uint8 images or floats in [-1, 1]: the 2048-d pool features (FID, KID, precision/recall)
        and the 1008-way logits (IS)."""
        pool, logits = [], []
        for chunk in images.split(batch_size):
            pixels = chunk if chunk.dtype == torch.uint8 else ((chunk.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            rgb = pixels.expand(-1, 3, -1, -1)  # grey repeated; colour as it is
            a, b = self.net(rgb)
            pool.append(a)
            logits.append(b)
        pool_features = torch.cat(pool)
        return {"conv": pool_features, "hidden": pool_features, "logits": torch.cat(logits)}


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
                        f"could run code. Use torch-fidelity's {WEIGHTS} as published.") from None
    except Exception as exc:
        raise UserError(f"inception_weights={path}: not a readable weights file ({type(exc).__name__}).") from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer
