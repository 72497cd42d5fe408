"""GAN metrics under named protocols (gan/metrics/protocols.py): the project's own classifier
offline, Inception-v3 for numbers a paper can quote.

The names live here, without torch, so that `gan.report` can read them cheaply. In the run's
loggers a score is tagged with its protocol (`metrics/fid50k_train/fid`), so that scores of two
protocols are never drawn in one chart; inside the run (the `best` checkpoint's monitor,
`optimized_metric`, status.json) it is `metrics/fid`, the run's own protocol, named beside it."""

METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "intra_fid", "modes_covered", "kl_uniform")
# Which way is better, for the console and the report: up (higher) or down (lower).
BETTER = {"fid": "↓", "kid": "↓", "is": "↑", "precision": "↑", "recall": "↑", "density": "↑", "coverage": "↑",
          "intra_fid": "↓", "modes_covered": "↑", "kl_uniform": "↓"}
CLASS_METRICS = ("modes_covered", "kl_uniform")  # they count the classes the samples fall in
CONDITIONAL_METRICS = ("intra_fid",)  # one FID per class: a conditional generator on labelled data


def logged_tag(name: str, protocol: str) -> str:
    """What the loggers call a score: `metrics/<protocol>/<name>`."""
    return f"metrics/{protocol}/{name}"


def short_tag(tag: str) -> tuple[str, str | None]:
    """`metrics/fid10k_test/fid` -> (`metrics/fid`, `fid10k_test`); a tag of one part fewer (a run
    from before protocols, or a loss) is its own short tag, with no protocol."""
    parts = tag.split("/")
    if len(parts) == 3 and parts[0] == "metrics" and parts[2] in METRICS:
        return f"metrics/{parts[2]}", parts[1]
    return tag, None


def available(labelled: bool, features: str, conditional: bool = False) -> tuple[tuple[str, ...], str]:
    """The metrics a dataset allows with these features (and a conditional generator), and what to
    tell the user when that is not all."""
    names = METRICS if conditional else tuple(m for m in METRICS if m not in CONDITIONAL_METRICS)
    if labelled:
        return names, ""
    if features == "inception":
        return (tuple(m for m in names if m not in CLASS_METRICS + CONDITIONAL_METRICS),
                "modes_covered, kl_uniform and intra_fid are not computed: they need the samples' classes, and this "
                "data has no class labels (data.labels=none)")
    return (), ("no metrics are computed: FID, KID, IS and precision/recall need a feature network, and the project's own "
                "classifier learns from class labels, which this data does not have (data.labels=none). For them, set "
                "an Inception protocol, callbacks.metrics.protocol=fid10k_test with callbacks.metrics.inception_weights="
                "<pytorch-fid's pt_inception-2015-12-05-6726825d.pth> (gan.evaluate: protocol=fid10k_test "
                "inception_weights=<file>), or data.labels=folders when the sub-folders are classes")
