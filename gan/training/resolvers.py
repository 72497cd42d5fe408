"""The OmegaConf resolvers conf/ uses, registered in one place: the entry points call
`register()` before Hydra composes a config (train.py, gan.bench, the tests)."""

from __future__ import annotations

from omegaconf import OmegaConf

from gan.run.folders import free_job_dir, outputs_root, sweep_dir, unique_dir
from gan.run.names import job_dir
from gan.sweeps.studies import study_seed

# name -> (function, cache its value): a folder is claimed once per run, however often it is read
RESOLVERS = {
    "unique_dir": (unique_dir, True),
    "sweep_dir": (sweep_dir, True),
    "outputs_root": (outputs_root, False),
    "free_job_dir": (free_job_dir, True),
    "job_dir": (job_dir, False),  # a pure function of the job's overrides
    "study_seed": (study_seed, False),
}


def register() -> None:
    for name, (function, cache) in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=cache)
