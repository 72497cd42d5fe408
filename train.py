"""Train a GAN: `python train.py [group=option ...] [key=value ...]`, `-m` for a sweep, `--help`."""

import os
import sys

# MKL's run-to-run reproducibility (its CNR mode for this CPU: same speed and numbers, here): without
# it MKL does not promise that two runs of one config give the same bits (docs/2026-12-02-crash-consistency.md).
os.environ.setdefault("MKL_CBWR", "AUTO")

import hydra
from omegaconf import DictConfig

from gan.config.hydra_runtime import whole_hydra_files
from gan.training import resolvers

resolvers.register()  # ${unique_dir:}, ${sweep_dir:}, ... in conf/, before Hydra composes it
whole_hydra_files()  # a job's .hydra/*.yaml written whole or not at all, as every file of a run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the final value of `optimized_metric`, which sweepers minimise or maximise
    (`failed_objective` for a job of a sweep that failed or diverged)."""
    from gan.training.job import run  # torch and Lightning load here, not for --help

    return run(cfg)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # ours, read off conf/; Hydra's own: --hydra-help
        from gan.config.help import text

        print(text())
    else:
        main()
