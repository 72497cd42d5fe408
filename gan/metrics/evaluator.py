"""Scoring generators against a dataset's test split, with the real-data floor beside them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gan.cache import cache_dir, cached
from gan.errors import UserError
from gan.metrics import available
from gan.metrics.extractor import classifier_for, datamodule_key
from gan.metrics.inception import InceptionFeatures
from gan.metrics.scores import kth_neighbour_distance, score
from gan.samples import generate


class Evaluator:
    """Holds the classifier and the test split's features, so each evaluation only extracts
    the generated samples. `n` samples from a fixed noise (`seed`): two evaluations of one
    generator agree exactly. The test split's features and k-NN radii are computed once per
    dataset (its content), feature network and k, and read from the cache after that; an
    evaluation runs the feature network and precision/recall on the generator's device."""

    def __init__(self, datamodule, n: int = 10_000, k: int = 3, seed: int = 0,
                 features: str = "classifier", inception_weights: str | None = None):
        if features not in ("classifier", "inception"):
            raise ValueError(f"features must be classifier or inception, got {features!r}")
        self.names, self.missing = available(datamodule.labelled, features)  # what this data allows
        if not self.names:
            raise UserError(self.missing[0].upper() + self.missing[1:] + ".")
        self.inception = InceptionFeatures(inception_weights) if features == "inception" else None
        # The dataset's classifier: the features (features=classifier) and mode coverage need one.
        self.net, self.accuracy = classifier_for(datamodule) if datamodule.labelled else (None, None)
        self.datamodule, self.n, self.k, self.seed = datamodule, n, k, seed
        self.key = datamodule_key(datamodule) + ("" if self.inception is None else f"-inception-{Path(inception_weights).name}")
        test_images = datamodule.split(train=False)[0]
        if len(test_images) <= k + 1:
            raise UserError(f"The metrics score against the held-out images, and {datamodule.name} has {len(test_images)}: "
                            f"precision and recall need more than k+1={k + 1} (raise data.holdout, or add images).")
        self.real = self.reference(test_images)

    def reference(self, test_images: torch.Tensor) -> dict[str, torch.Tensor]:
        digest = hashlib.sha256(np.ascontiguousarray(test_images.numpy())).hexdigest()[:16]

        def compute() -> dict[str, torch.Tensor]:
            real = self.features(test_images)
            real[f"radii_k{self.k}"] = kth_neighbour_distance(real["conv"], self.k)
            return real

        return cached(cache_dir() / f"{self.key}-test-{digest}-k{self.k}.pt", compute,
                      f"the reference features of {self.datamodule.name}")

    def features(self, images: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        own = None if self.net is None else self.net.to(device).features(images)
        if self.inception is None:
            return own
        return {**self.inception.features(images), **({} if own is None else {"class_logits": own["class_logits"]})}

    def __call__(self, generator: nn.Module, progress: bool = False) -> dict[str, float]:
        """Conditional generators are scored on the classes in equal shares. `progress`: a bar
        through the stages (an evaluation takes a while on a small CPU)."""
        was_training = generator.training
        device = next(generator.parameters()).device
        with tqdm(total=3, desc=f"evaluating {self.n} samples", leave=False, disable=not progress, position=1) as bar:
            bar.set_postfix_str("generating")
            samples = generate(generator.eval(), self.n, self.seed)
            generator.train(was_training)
            bar.update()
            bar.set_postfix_str("features")
            fake = self.features(samples, device)
            bar.update()
            bar.set_postfix_str("scores")
            result = score(self.real, fake, self.k, device)
            bar.update()
        return result

    def floor(self) -> dict[str, float]:
        """The same metrics for n real training images against the test split: what perfect reads."""
        images, _ = self.datamodule.split(train=True)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[: self.n]
        return score(self.real, self.features(images[pick]), self.k)
