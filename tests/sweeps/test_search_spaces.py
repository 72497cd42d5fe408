"""Each Optuna search space composes with every experiment its header claims (all of them): every
value it can propose gives a config that validates and networks that build."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan.training.schema import validate
from tests.helpers import CONF, make_cfg

SEARCHES = sorted(path.stem for path in (CONF / "hparams_search").glob("*.yaml"))
EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))


def proposals(search: str) -> list[tuple[str, object]]:
    """(key, value) for every value the search space can propose: each choice, each interval's ends."""
    space = {}
    for name in ("optuna_fid", search):  # optuna_quick extends optuna_fid
        node = OmegaConf.load(CONF / "hparams_search" / f"{name}.yaml")
        space.update(OmegaConf.to_container(node.hydra.sweeper.get("params") or {}))
    out = []
    parser = OverridesParser.create()
    for key, text in space.items():
        value = parser.parse_override(f"{key}={text}").value()
        if isinstance(value, ChoiceSweep):
            out += [(key, v) for v in value.list]
        elif isinstance(value, IntervalSweep):
            out += [(key, value.start), (key, value.end)]
        else:
            out.append((key, value))
    return out


def test_the_search_spaces_exist():
    assert {"optuna_fid", "optuna_quick"} <= set(SEARCHES)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("search", SEARCHES)
def test_every_proposal_of_a_search_space_builds_with_every_experiment(search, experiment):
    for key, value in proposals(search):
        cfg = make_cfg(f"hparams_search={search}", f"experiment={experiment}", f"{key}={value}")
        validate(cfg)
        instantiate(cfg.model.generator), instantiate(cfg.model.discriminator), instantiate(cfg.loss)
        if "." in key:  # a value, not a group option: it reaches the key, whatever the experiment sets
            assert OmegaConf.select(cfg, key) == value
