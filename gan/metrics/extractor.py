"""The feature extractor: a small CNN trained on the dataset's own training split.

Inception weights cannot be downloaded here and are a poor fit for 28x28 grey digits anyway, so
FID, KID and the Inception-Score analogue use this classifier instead. It is trained the first
time it is needed (about a minute on a 2-core CPU) and cached on disk under a key made of the
dataset, the image shape, this file's network and training recipe, so a changed definition or
dataset never reuses a stale model.

Two feature spaces: `hidden` (the penultimate layer: FID, KID) and `conv` (the flattened
convolutional features: precision and recall, where the k-NN balls of real data stay tight
enough that noise does not land inside them).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gan.cache import cache_dir, cached
from gan.data.batches import to_unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained; part of the cache key."""

    epochs: int = 4
    min_steps: int = 300  # a small set (a folder of a few hundred images) gets more epochs, not a few steps
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


class Classifier(nn.Module):
    """[conv5 -> ReLU -> pool] x stages (32, 64, 128... channels) -> [conv features] -> fc(128) ->
    [hidden] -> fc(classes). Two stages for 28x28 and 32x32 images, one more per doubling above, so
    the last feature map stays at most 8x8 whatever the image size."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        channels, height, width = image_shape
        stages = 2
        while min(height, width) >> stages > 8:
            stages += 1
        layers: list[nn.Module] = []
        for i in range(stages):
            layers += [nn.Conv2d(channels if i == 0 else 32 << (i - 1), 32 << i, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear((32 << (stages - 1)) * (height >> stages) * (width >> stages), 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.conv(x)))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1000) -> dict[str, torch.Tensor]:
        """`conv`, `hidden` and `logits` (also as `class_logits`) of images (uint8, or floats in
        [-1, 1]), a batch at a time, returned on the CPU."""
        device = next(self.parameters()).device
        out: dict[str, list[torch.Tensor]] = {"conv": [], "hidden": [], "logits": []}
        for chunk in images.split(batch_size):
            conv = self.conv(as_input(chunk.to(device)))
            hidden = self.hidden(conv)
            for name, value in (("conv", conv), ("hidden", hidden), ("logits", self.head(hidden))):
                out[name].append(value.cpu())
        features = {name: torch.cat(parts) for name, parts in out.items()}
        return {**features, "class_logits": features["logits"]}


def as_input(images: torch.Tensor) -> torch.Tensor:
    """float32 in [-1, 1]: datasets hold uint8 pixels, generators return floats (an unbounded G's,
    R3GAN's, clipped to the range as its images are when saved)."""
    return to_unit(images) if images.dtype == torch.uint8 else images.float().clamp(-1, 1)


def cache_key(dataset: str, image_shape: tuple[int, ...], num_classes: int, recipe: Recipe) -> str:
    blob = repr((dataset, tuple(image_shape), num_classes, asdict(recipe), DEFINITION)).encode()
    return f"{dataset}-{'x'.join(map(str, image_shape))}-{hashlib.sha256(blob).hexdigest()[:16]}"


def fit(net: Classifier, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe) -> None:
    """Adam with a cosine-decayed rate; a progress bar per epoch."""
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    batch = min(recipe.batch_size, len(images))
    per_epoch = len(images) // batch
    epochs = max(recipe.epochs, -(-recipe.min_steps // per_epoch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * per_epoch)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        batches = order[: per_epoch * batch].view(-1, batch)
        for idx in tqdm(batches, desc=f"feature classifier, epoch {epoch + 1}/{epochs}", leave=False):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(as_input(images[idx])), labels[idx]).backward()
            optimizer.step()
            schedule.step()
    net.eval()


# The network and its training code as written in this file: editing either retires old caches.
DEFINITION = inspect.getsource(Classifier) + inspect.getsource(fit)


def accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (net.features(images)["logits"].argmax(1) == labels).float().mean().item()


def datamodule_key(datamodule, recipe: Recipe = Recipe()) -> str:
    """The cache key of a datamodule's classifier (and of what is cached beside it)."""
    return cache_key(datamodule.name, datamodule.image_shape, datamodule.num_classes, recipe)


def classifier_for(datamodule, recipe: Recipe = Recipe()) -> tuple[Classifier, float]:
    """The feature classifier of a labelled datamodule (gan/data/), trained on its training split."""
    return load_or_train(datamodule.name, datamodule.split(train=True),
                         datamodule.split(train=False), datamodule.num_classes, recipe)


def load_or_train(
    dataset: str,
    train_split: tuple[torch.Tensor, torch.Tensor],
    test_split: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    recipe: Recipe = Recipe(),
) -> tuple[Classifier, float]:
    """The cached classifier for this dataset and definition, trained first if there is none.
    Returns the network (eval mode, CPU) and its test accuracy."""
    images, labels = train_split
    image_shape = tuple(images.shape[1:])
    path = cache_dir() / f"{cache_key(dataset, image_shape, num_classes, recipe)}.pt"

    def train() -> dict:
        log.info("Training the %s feature classifier (cached afterwards at %s)", dataset, path)
        torch.manual_seed(recipe.seed)
        net = Classifier(image_shape, num_classes)
        fit(net, images, labels, recipe)
        test_accuracy = accuracy(net, *test_split)
        log.info("%s feature classifier: %.2f%% test accuracy", dataset, 100 * test_accuracy)
        return {"state_dict": net.state_dict(), "test_accuracy": test_accuracy}

    # two runs started together: one trains, the other waits and loads; a damaged file is trained again
    saved = cached(path, train, f"the {dataset} feature classifier")
    net = Classifier(image_shape, num_classes)
    net.load_state_dict(saved["state_dict"])
    return net.eval(), float(saved["test_accuracy"])
