"""Scoring generators under a protocol (gan/metrics/protocols.py), with the real-data floor beside them."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gan.cache import cache_dir, cached
from gan.errors import UserError
from gan.metrics import available
from gan.metrics.extractor import classifier_for, datamodule_key
from gan.metrics.inception import InceptionFeatures
from gan.metrics.memorisation import memorisation
from gan.metrics.protocols import Protocol, parse
from gan.metrics.scores import frechet, inception_score, intra_fid, kth_neighbour_distance, score, statistics
from gan.metrics.stats_files import read_stats
from gan.samples import generate, generated_batches


class Evaluator:
    """Holds the feature network and the reference images' features, so each evaluation only
    extracts the generated samples. The protocol's `n` samples come from a fixed noise (`seed`):
    two evaluations of one generator agree exactly; they are made and featurised a batch at a
    time, so 50,000 of them never sit in memory as images. The reference features (every image of
    the protocol's reference split) and their k-NN radii are computed once per dataset (its
    content), feature network, resize and k, and read from the cache after that. `ref`: a .npz of
    reference statistics (gan/metrics/stats_files.py) that FID is scored against instead; it holds
    no features, so FID (and IS, which needs no reference) are all it allows."""

    def __init__(self, datamodule, protocol: Protocol | str = "classifier10k_test", k: int = 3, seed: int = 0,
                 inception_weights: str | None = None, ref: str | None = None, conditional: bool = False):
        self.protocol = parse(protocol) if isinstance(protocol, str) else protocol
        self.names, self.missing = available(datamodule.labelled, self.protocol.features, conditional)
        if not self.names:
            raise UserError(self.missing[0].upper() + self.missing[1:] + ".")
        inception = self.protocol.features == "inception"
        self.inception = InceptionFeatures(inception_weights, self.protocol.resize) if inception else None
        # The dataset's classifier: the features (classifier protocols) and mode coverage need one.
        self.net, self.accuracy = classifier_for(datamodule) if datamodule.labelled else (None, None)
        self.datamodule, self.k, self.seed = datamodule, k, seed
        self.network = self.inception.identity if inception else f"classifier-{datamodule_key(datamodule)}"
        images, labels = datamodule.split(train=self.protocol.reference == "train")
        self.real_labels = torch.as_tensor(labels)
        if len(images) <= k + 1:
            raise UserError(f"The metrics score against the {self.protocol.reference} images, and {datamodule.name} has "
                            f"{len(images)}: precision and recall need more than k+1={k + 1} (raise data.holdout, or add "
                            f"images).")
        self.real = self.split_features(self.protocol.reference == "train", radii=True)
        self.stats = None if ref is None else read_stats(ref, self.real["hidden"].shape[1], self.provenance(), "ref")
        if self.stats is not None:
            self.names = tuple(m for m in self.names if m in ("fid", "is"))
            self.missing = f"against ref={ref} (mu and sigma alone) only FID and IS are scored"

    def provenance(self) -> dict[str, str]:
        """What a .npz of these reference statistics says produced it."""
        return {"protocol": self.protocol.name, "features": self.network, "resize": self.protocol.resize,
                "dataset": self.datamodule.name, "split": self.protocol.reference, "images": str(len(self.real["hidden"]))}

    def split_features(self, train: bool, radii: bool = False) -> dict[str, torch.Tensor]:
        """The features of every image of a split (with their k-NN radii: the reference's), from the cache."""
        images = self.datamodule.split(train=train)[0]
        split = "train" if train else "test"
        digest = hashlib.sha256(np.ascontiguousarray(images.numpy())).hexdigest()[:16]

        def compute() -> dict[str, torch.Tensor]:
            real = self.features(images)
            if radii:
                real[f"radii_k{self.k}"] = kth_neighbour_distance(real["conv"], self.k)
            return real

        name = f"{datamodule_key(self.datamodule)}-{self.network}-{self.protocol.resize}-{split}-{digest}"
        return cached(cache_dir() / f"{name}{f'-k{self.k}' if radii else ''}.pt", compute,
                      f"the {split} features of {self.datamodule.name}")

    def features(self, images: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        own = None if self.net is None else self.net.to(device).features(images)
        if self.inception is None:
            return own
        return {**self.inception.features(images, device), **({} if own is None else {"class_logits": own["class_logits"]})}

    def sample_features(self, generator: nn.Module, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The features of the protocol's samples and their classes (None: unconditional)."""
        parts, labels = [], []
        for images, y in generated_batches(generator, self.protocol.n, self.seed):
            parts.append(self.features(images, device))
            labels.append(y)
        features = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
        return features, None if labels[0] is None else torch.cat(labels).cpu()

    def __call__(self, generator: nn.Module, progress: bool = False) -> dict:
        """The scores, with `protocol` and `features` (what produced them); a conditional generator
        is scored on the classes in equal shares. `progress`: a bar through the stages (an
        evaluation takes a while on a small CPU)."""
        was_training = generator.training
        device = next(generator.parameters()).device
        with tqdm(total=2, desc=f"evaluating {self.protocol.name}", leave=False, disable=not progress, position=1) as bar:
            bar.set_postfix_str("samples and their features")
            fake, labels = self.sample_features(generator.eval(), device)
            generator.train(was_training)
            bar.update()
            bar.set_postfix_str("scores")
            result = self.scores(fake, labels, device)
            bar.update()
        return result

    def scores(self, fake: dict[str, torch.Tensor], labels: torch.Tensor | None, device: torch.device | str = "cpu") -> dict:
        if self.stats is not None:
            result = {"fid": frechet(*statistics(fake["hidden"]), *self.stats[:2]), "is": inception_score(fake["logits"])}
        else:
            result = score(self.real, fake, self.k, device)
        if "intra_fid" in self.names and labels is not None:
            per_class = intra_fid(self.real["hidden"], self.real_labels, fake["hidden"], labels)
            result["intra_fid"], result["fid_per_class"] = float(np.mean(list(per_class.values()))), per_class
        result = {name: result[name] for name in (*self.names, "fid_per_class") if name in result}
        return {**result, "n": len(fake["hidden"]), "protocol": self.protocol.name, "features": self.network}

    def draw(self, total: int, n: int) -> torch.Tensor:
        """n of `total` real images, the same ones for the same seed (the floor's, the memorisation check's)."""
        return torch.randperm(total, generator=torch.Generator().manual_seed(self.seed))[:n]

    def floor(self) -> dict:
        """The same metrics for real images of the other split against the reference (up to n of
        them, drawn with the seed): what a perfect generator would read."""
        images, labels = self.datamodule.split(train=self.protocol.reference == "test")
        pick = self.draw(len(images), self.protocol.n)
        labelled = "intra_fid" in self.names and self.datamodule.labelled
        return self.scores(self.features(images[pick]), torch.as_tensor(labels)[pick] if labelled else None)

    def cached_floor(self) -> dict[str, float]:
        """The floor's scores, computed once per dataset (both splits' content), network, protocol,
        k and seed, and read from the cache after that: every run of a sweep shows it beside its own."""
        digests = [hashlib.sha256(np.ascontiguousarray(self.datamodule.split(train=t)[0].numpy())).hexdigest()[:12]
                   for t in (False, True)]
        name = f"floor-{datamodule_key(self.datamodule)}-{self.network}-{self.protocol.name}-{'-'.join(digests)}"
        return cached(cache_dir() / f"{name}-k{self.k}-seed{self.seed}.pt",
                      lambda: {k: float(v) for k, v in self.floor().items() if k in self.names}, "the real-data floor")

    def reference_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        return statistics(self.real["hidden"])

    def memorisation(self, generator: nn.Module, n: int) -> dict:
        """The memorisation check (gan/metrics/memorisation.py) of the first n evaluation samples
        against as many held-out images (a seeded draw: equal counts on both sides, and the search
        costs n rows, not the whole held-out split), with the samples themselves (`samples`, on the
        CPU) for the grid of closest pairs."""
        device = next(generator.parameters()).device
        was_training = generator.training
        samples = generate(generator.eval(), n, self.seed)
        generator.train(was_training)
        train, heldout = (self.real if self.protocol.reference == split else self.split_features(split == "train")
                          for split in ("train", "test"))
        held = heldout["conv"][self.draw(len(heldout["conv"]), n)]
        return {**memorisation(self.features(samples, device)["conv"], held, train["conv"]), "samples": samples}


def describe(evaluator: Evaluator) -> str:
    """The line saying what the numbers are: protocol, network, reference."""
    return f"{evaluator.protocol.describe()}, {evaluator.network}"

