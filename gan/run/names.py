"""What a job of a sweep is called: by what it changed. Its folder (and so its TensorBoard run
name) is `<job number>_<key>-<value>_...` (`3_latent_dim-32_lr-1e-4`), its HParams row
`latent_dim=32 lr=1e-4 · job 3 · multirun/<date>/<time>`: only the keys the sweep varies, each
by the shortest end of its dotted name that no other swept key shares (`lr`, but `generator.lr`
beside `discriminator.lr`), so what differs is what a narrow column shows first. The number
keeps names unique and sortable. Kept free of torch: the folder is named before the job starts."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from gan.config.hydra_runtime import in_sweep, overrides, sweep_folder, sweeper
from gan.config.untrusted import lookup, read_yaml
from gan.errors import UserError

MAX_NAME = 120  # characters of a job folder's name: file systems allow 255, people read far fewer


def varying(arguments: Iterable[str]) -> list[str]:
    """The keys of `key=sweep` arguments that take more than one value, in their order (a later
    argument of a key replaces an earlier one, as the sweepers read them)."""
    keys: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element().lstrip("+~")
        keys.pop(key, None)
        if override.is_sweep_override():
            single = override.is_choice_sweep() and len(list(override.sweep_string_iterator())) < 2
            if not single:
                keys[key] = True
    return list(keys)


def sweep_arguments(folder: Path | None) -> list[str]:
    """The sweep's own arguments: its search space (`hydra.sweeper.params`) and its command line
    (`multirun.yaml`, which both sweepers write before the first job starts), as data."""
    params = sweeper().get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    grid = None if folder is None else folder / "multirun.yaml"
    if grid is not None and grid.is_file():
        try:
            task = lookup(read_yaml(grid), "hydra.overrides.task") or []  # nothing in it resolved
        except UserError:  # damaged: the job is named by its search space alone
            task = []
        arguments += [str(o) for o in task if not str(o).lstrip("+~").startswith("hydra.")]
    return arguments


def swept_keys() -> list[str]:
    """The keys this job's sweep varies (none outside a sweep)."""
    return varying(sweep_arguments(sweep_folder())) if in_sweep() else []


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each key by the shortest end of its dotted name that no other key of `keys` ends with."""
    def ending(key: str, parts: int) -> str:
        return ".".join(key.split(".")[-parts:])

    found = {}
    for key in keys:
        parts = 1
        while parts < key.count(".") + 1 and any(ending(other, parts) == ending(key, parts) for other in keys if other != key):
            parts += 1
        found[key] = ending(key, parts)
    return found


def short_value(value: str) -> str:
    """A number in its shortest form to three significant digits (0.0001 -> 1e-4, 0.00012345678 ->
    1.23e-4, 0.5 stays); integers and words stay as they are."""
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("+-").isdigit() or not math.isfinite(number):
        return value
    mantissa, exponent = f"{number:.2e}".split("e")
    scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return min(f"{number:.3g}", scientific, key=len)


def changed() -> list[tuple[str, str]]:
    """(short key, value) of each swept key this job sets, in the sweep's order."""
    keys = swept_keys()
    mine = dict(o.lstrip("+~").split("=", 1) for o in overrides() if "=" in o)
    names = short_keys(keys)
    return [(names[key], short_value(mine[key])) for key in keys if key in mine]


def job_dir(job_num: int | str) -> str:
    """A job's folder under its sweep's: its number, then what it changed, in characters that need
    no quoting in a shell or a Hydra override (`ckpt_path=<sweep>/3_lr-1e-4` works as typed)."""
    name = str(job_num) + "".join(f"_{key}-{value}" for key, value in changed())
    return re.sub(r"[^\w.+-]", "-", name)[:MAX_NAME]


def job_number(folder: Path) -> int | None:
    """The number a job folder's name starts with (`3` of `3_lr-1e-4`); None for other folders."""
    match = re.match(r"(\d+)(_|$)", folder.name)
    return int(match.group(1)) if match else None


def row_name(run_dir: str | Path, outputs: Path | None = None) -> str:
    """The HParams row of a run. A sweep's job: what it changed, its number, its sweep's folder
    under outputs/ (`latent_dim=32 lr=1e-4 · job 3 · multirun/2026-11-28/08-00-00`). A single
    run: its overrides and its folder."""
    folder = Path(run_dir).resolve()
    outputs = (outputs or Path.cwd() / "outputs").resolve()
    where = lambda p: str(p.relative_to(outputs)) if p.is_relative_to(outputs) else p.name  # noqa: E731
    if in_sweep():
        what = " ".join(f"{key}={value}" for key, value in changed()) or "defaults"
        return f"{what} · job {job_number(folder) if job_number(folder) is not None else folder.name} · {where(folder.parent)}"
    return f"{' '.join(overrides()) or 'defaults'} · {where(folder)}"
