"""Scoring generators against a dataset's test split, with the real-data floor beside them."""

from __future__ import annotations

import torch
from torch import nn

from gan.metrics.extractor import classifier_for
from gan.metrics.inception import InceptionFeatures
from gan.metrics.scores import score
from gan.sampling import generate


class Evaluator:
    """Holds the classifier and the test split's features, so each evaluation only extracts
    the generated samples. `n` samples from a fixed noise (`seed`): two evaluations of one
    generator agree exactly."""

    def __init__(self, datamodule, n: int = 10_000, k: int = 3, seed: int = 0,
                 features: str = "classifier", inception_weights: str | None = None):
        if features not in ("classifier", "inception"):
            raise ValueError(f"features must be classifier or inception, got {features!r}")
        self.inception = InceptionFeatures(inception_weights) if features == "inception" else None
        self.net, self.accuracy = classifier_for(datamodule)  # mode coverage needs the dataset's classes either way
        self.datamodule, self.n, self.k, self.seed = datamodule, n, k, seed
        test_images, _ = datamodule.split(train=False)
        self.real = self.features(test_images)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        own = self.net.features(images)
        if self.inception is None:
            return own
        return {**self.inception.features(images), "class_logits": own["class_logits"]}

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        """Conditional generators are scored on the classes in equal shares."""
        was_training = generator.training
        samples = generate(generator.eval(), self.n, self.seed)
        generator.train(was_training)
        return score(self.real, self.features(samples), self.k)

    def floor(self) -> dict[str, float]:
        """The same metrics for n real training images against the test split: what perfect reads."""
        images, _ = self.datamodule.split(train=True)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[: self.n]
        return score(self.real, self.features(images[pick]), self.k)
