"""Offline GAN metrics on a classifier the project trains itself (issue: metrics you can trust).

The names live here, without torch, so that `gan.report` can read them cheaply."""

METRICS = ("fid", "kid", "is", "precision", "recall", "modes_covered", "kl_uniform")
TAGS = tuple(f"metrics/{name}" for name in METRICS)  # as logged during training
# Which way is better, for the console and the report: up (higher) or down (lower).
BETTER = {"fid": "↓", "kid": "↓", "is": "↑", "precision": "↑", "recall": "↑", "modes_covered": "↑", "kl_uniform": "↓"}
