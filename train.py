"""Train a GAN: `python train.py [group=option ...] [key=value ...]`, `-m` for a sweep."""

import hydra
from omegaconf import DictConfig

import gan.rundir  # noqa: F401  (registers the ${unique_dir:...} resolver used by the run folders)
from gan.train import objective, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the final value of `optimized_metric`, which sweepers minimise or maximise."""
    return objective(cfg, train(cfg))


if __name__ == "__main__":
    main()
