"""Train a GAN: `python train.py [group=option ...] [key=value ...]`, `-m` for a sweep."""

import hydra
from omegaconf import DictConfig

from gan import resolvers
from gan.job import run

resolvers.register()  # ${unique_dir:}, ${sweep_dir:}, ... in conf/, before Hydra composes it


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the final value of `optimized_metric`, which sweepers minimise or maximise
    (`failed_objective` for a job of a sweep that failed or diverged)."""
    return run(cfg)


if __name__ == "__main__":
    main()
