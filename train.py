"""Train a GAN: `python train.py [group=option ...] [key=value ...]`, `-m` for a sweep."""

import hydra
from omegaconf import DictConfig

import gan.rundir  # noqa: F401  (registers the resolvers of the run and sweep folders)
import gan.study  # noqa: F401  (registers ${study_seed:...} of the hparams_search configs)
from gan.job import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the final value of `optimized_metric`, which sweepers minimise or maximise
    (`failed_objective` for a job of a sweep that failed or diverged)."""
    return run(cfg)


if __name__ == "__main__":
    main()
