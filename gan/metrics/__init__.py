"""Offline GAN metrics on a classifier the project trains itself (issue: metrics you can trust).

The names live here, without torch, so that `gan.report` can read them cheaply."""

METRICS = ("fid", "kid", "is", "precision", "recall", "modes_covered", "kl_uniform")
TAGS = tuple(f"metrics/{name}" for name in METRICS)  # as logged during training
# Which way is better, for the console and the report: up (higher) or down (lower).
BETTER = {"fid": "↓", "kid": "↓", "is": "↑", "precision": "↑", "recall": "↑", "modes_covered": "↑", "kl_uniform": "↓"}
CLASS_METRICS = ("modes_covered", "kl_uniform")  # they count the classes the samples fall in


def available(labelled: bool, features: str) -> tuple[tuple[str, ...], str]:
    """The metrics a dataset allows with these features, and what to tell the user when that is not all."""
    if labelled:
        return METRICS, ""
    if features == "inception":
        return (tuple(m for m in METRICS if m not in CLASS_METRICS),
                "modes_covered and kl_uniform are not computed: they count the classes the samples fall in, and this "
                "data has no class labels (data.labels=none)")
    return (), ("no metrics are computed: FID, KID, IS and precision/recall need a feature network, and the project's own "
                "classifier learns from class labels, which this data does not have (data.labels=none). For them, set "
                "callbacks.metrics.features=inception with callbacks.metrics.inception_weights=<torch-fidelity's "
                "pt_inception-2015-12-05-6726825d.pth> (gan.evaluate: features=inception inception_weights=<file>), or "
                "data.labels=folders when the sub-folders are classes")
