"""Does the generator copy its training images? For each of N samples, the distance to its
nearest training image in the protocol's feature space (`conv`: Inception's pool features, or
the classifier's convolutional ones), set against the same distance for the held-out images,
which the generator never saw and so cannot have copied. A generator that learnt the
distribution sits where the held-out images sit; one that memorised sits at distance 0 (copying
a small data set is the failure FID does not show).

The numbers: both medians, their ratio, and the share of samples nearer to a training image
than 99% of held-out images are (`below_heldout_p1`: about 0.01 when nothing is copied)."""

from __future__ import annotations

import torch


def nearest(query: torch.Tensor, points: torch.Tensor, chunk: int = 1000, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the distance to its nearest row of `points`, and that row's index (k > 1:
    the k nearest, nearest first, as (n, k) tensors). The search uses the fast matrix-product
    distances; the distances returned are recomputed directly, so a copy reads exactly 0. The one
    nearest-neighbour search of the project: the memorisation check and gan.generate mode=nearest."""
    points = points.float()
    distances, indices = [], []
    for part in query.float().split(chunk):
        i = torch.cdist(part, points).topk(min(k, len(points)), dim=1, largest=False).indices
        d = (part[:, None] - points[i]).norm(dim=2)
        order = d.argsort(dim=1, stable=True)  # the exact distances decide ties the fast ones blurred
        distances.append(d.gather(1, order))
        indices.append(i.gather(1, order))
    distances, indices = torch.cat(distances), torch.cat(indices)
    return (distances[:, 0], indices[:, 0]) if k == 1 else (distances, indices)


def memorisation(fake: torch.Tensor, heldout: torch.Tensor, train: torch.Tensor) -> dict:
    """The summary above, with `order` (the samples from nearest to farthest) and `nearest` (each
    sample's training image), for the grid of closest pairs."""
    fake_d, fake_i = nearest(fake, train)
    held_d, _ = nearest(heldout, train)
    median, held_median = fake_d.median().item(), held_d.median().item()
    p1 = torch.quantile(held_d.double(), 0.01).item()
    return {"n": len(fake), "median": median, "heldout_median": held_median,
            "ratio": median / held_median if held_median > 0 else float("inf"),
            "below_heldout_p1": (fake_d < p1).float().mean().item(),
            "order": fake_d.argsort(stable=True), "distances": fake_d, "nearest": fake_i}
