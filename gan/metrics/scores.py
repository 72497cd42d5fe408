"""The metrics, computed once per image set on features from the protocol's network.

KID and the Inception Score are torchmetrics' implementations (in float64), fed precomputed
features through `Precomputed`, so each image set goes through the network once. FID is the
Fréchet distance of two sets' (mu, sigma) (float64, as torchmetrics computes it), so that a
reference may also come as statistics from a file. Improved precision/recall (Kynkäänniemi et al.
2019), density/coverage (Naeem et al. 2020) and mode coverage are small vectorised functions here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance


def quiet_metric(cls, **kwargs):
    """A torchmetrics metric of this process's samples alone: one process scores all of them, so
    no gathering from the others of a distributed run (which would wait for processes that are
    not scoring); built without its warning that it keeps every feature in memory (KID and IS do;
    here that is 10,000 small vectors, nothing for the user to act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Metric `.*` will save all extracted features in buffer")
        return cls(sync_on_compute=False, **kwargs)


class Precomputed(nn.Identity):
    """Lets torchmetrics' image metrics take features that were already extracted."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance in float64: what FID compares, and what a .npz of reference statistics holds."""
    x = features.double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the trace of the root as the
    sum of the roots of the product's eigenvalues (as torchmetrics computes it)."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, sigma1, mu2, sigma2))
    root_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * root_trace)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    return frechet(*statistics(real), *statistics(fake))


def intra_fid(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor) -> dict[int, float]:
    """One FID per class (the class's reference images against the samples generated for it): intra-FID is their mean."""
    return {int(c): fid(real[real_labels == c], fake[fake_labels == c]) for c in fake_labels.unique().tolist()}


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Mean of the unbiased polynomial-kernel MMD over random subsets (seeded: repeatable)."""
    metric = quiet_metric(KernelInceptionDistance, feature=Precomputed(real.shape[1]), subsets=subsets,
                          subset_size=min(subset_size, len(real), len(fake)))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return mean.item()


def inception_score(logits: torch.Tensor, splits: int = 10) -> float:
    """exp(E KL(p(y|x) || p(y))) over the classifier's class probabilities."""
    metric = quiet_metric(InceptionScore, feature=Precomputed(logits.shape[1]), splits=splits)
    metric.update(logits.double())
    with torch.random.fork_rng():
        torch.manual_seed(0)  # torchmetrics shuffles before splitting
        mean, _ = metric.compute()
    return mean.item()


def kth_neighbour_distance(points: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    return torch.cat([torch.cdist(part, points).topk(k + 1, largest=False).values[:, k] for part in points.split(chunk)])


def neighbourhoods(real: torch.Tensor, fake: torch.Tensor, k: int = 3, real_radii: torch.Tensor | None = None,
                   chunk: int = 1000) -> dict[str, float]:
    """Four scores of the k-NN balls, from one fake-to-real distance matrix read a chunk of rows
    at a time (on the device the features are on):
    precision, the share of fakes inside some real's ball (are fakes realistic?); recall, the share
    of reals inside some fake's ball (is the data covered?) (Kynkäänniemi et al. 2019); density,
    the mean number of real balls a fake lies in, over k (near 1 for fakes like the reals, above for
    fakes crowding where reals are dense); coverage, the share of reals whose ball holds a fake
    (Naeem et al. 2020: the reals' balls only, so outlying fakes cannot inflate it). `real_radii`
    (the reals' k-NN distances, the same at every evaluation) may come precomputed."""
    real, fake = real.float(), fake.float()
    real_radii = kth_neighbour_distance(real, k) if real_radii is None else real_radii.to(real.device)
    fake_radii = kth_neighbour_distance(fake, k)
    fake_inside = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    real_inside = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    real_covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    balls_holding_fakes = 0
    for start in range(0, len(fake), chunk):
        distances = torch.cdist(fake[start : start + chunk], real)
        in_real_balls = distances <= real_radii
        fake_inside[start : start + chunk] = in_real_balls.any(dim=1)
        real_covered |= in_real_balls.any(dim=0)
        balls_holding_fakes += int(in_real_balls.sum())
        real_inside |= (distances <= fake_radii[start : start + chunk, None]).any(dim=0)
    return {"precision": fake_inside.float().mean().item(), "recall": real_inside.float().mean().item(),
            "density": balls_holding_fakes / (k * len(fake)), "coverage": real_covered.float().mean().item()}


def mode_coverage(logits: torch.Tensor) -> tuple[torch.Tensor, int, float]:
    """Class histogram of the samples as the classifier labels them, the number of classes that
    get at least a quarter of their fair share, and KL(histogram || uniform) in nats."""
    classes = logits.shape[1]
    histogram = torch.bincount(logits.argmax(dim=1), minlength=classes).double() / len(logits)
    covered = int((histogram >= 0.25 / classes).sum())
    nonzero = histogram[histogram > 0]
    kl = float((nonzero * (nonzero * classes).log()).sum())
    return histogram, covered, kl


def score(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor], k: int = 3,
          device: torch.device | str = "cpu") -> dict[str, float]:
    """Every metric between two feature sets: `hidden` for FID and KID, `conv` for precision,
    recall, density and coverage, `logits` for IS, and `class_logits` (the dataset classifier's, when the data has
    classes) for mode coverage. `real` may hold `radii_k<k>`, its k-NN distances (Evaluator keeps
    them); the k-NN scores, the costly part, run on `device`."""
    radii = real.get(f"radii_k{k}")
    result = {
        "fid": fid(real["hidden"], fake["hidden"]),
        "kid": kid(real["hidden"], fake["hidden"]),
        "is": inception_score(fake["logits"]),
        **neighbourhoods(real["conv"].to(device), fake["conv"].to(device), k, radii),
    }
    if "class_logits" in fake:  # a dataset without labels has no classes to cover
        _, result["modes_covered"], result["kl_uniform"] = mode_coverage(fake["class_logits"])
    return {**result, "n": len(fake["logits"])}

