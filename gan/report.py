"""Compare the jobs of a sweep: `python -m gan.report sweep=<sweep folder>` (or `sweep=<its study's
storage URL>`, e.g. `postgresql://...` or `journal:///...`, whose trials name their folders).

Writes into `<sweep folder>/report/`: `jobs.csv` and `jobs.md` (one row per job: status, how it
ended early, the value it is ranked by in a column named for it, its swept overrides, final and
best metrics, wall time; the real-data floor as the first row when the jobs recorded one), one
`objective_vs_<key>.png` per swept key (points coloured by the other swept keys), `curves.png`
(the FID, or the objective, over the iterations of the best jobs, each labelled by its overrides)
and `best_samples.png` (the best job's last grid, captioned with the job, its overrides and score).
Jobs are ranked by the sweep's objective (`optimized_metric`), else by their last FID; jobs stopped
early (pruned, or by the health monitor) rank after the finished ones. `notes.txt` says what the
ranking used and names any plot left out because it would be empty. Jobs that differ only in
`seed` are also grouped in `seeds.md`/`seeds.csv`: mean ± std (n) of every score, ranked on the
mean. A multi-objective sweep marks its Pareto front (★). An Optuna sweep adds Optuna's views of
its study (optuna_history.png, optuna_importance.png with a caveat below FEW_TRIALS complete
trials, or optuna_pareto_front.png) and counts its complete, pruned and failed trials. It reads
what each job left behind (.hydra/, status.json, TensorBoard events) and the sweep's
multirun.yaml (every searched key gets its column), so it works on a sweep that is still running,
was interrupted, or has failed jobs. A damaged or missing file (a truncated status.json, a job
folder without .hydra/, an unreadable optuna.db) does not stop it: the report is made from what
can be read, and the `defects` column and `notes.txt` name each such file and what is wrong with it.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import struct
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # the checksum of event records

from gan.config.cli import run
from gan.config.untrusted import lookup, read_yaml, shown
from gan.errors import UserError
from gan.files import write_atomically, write_text
from gan.metrics import BETTER, METRICS, short_tag
from gan.run.folders import job_order
from gan.run.names import job_number, short_keys, short_value, varying
from gan.run.status import STATUS_FILE, DamagedStatus, read_status, stopped_at

CURVE_JOBS = 5  # best jobs drawn in curves.png
FEW_TRIALS = 20  # complete trials below which parameter importances come with a caveat
MAX_GROUPS = 6  # an objective_vs_<key> plot colours its points by the other keys when they make this many groups at most
UNKNOWN = "unknown"  # what the tables show for an override of a job whose .hydra/ is gone or unreadable
FINISHED = ("completed", "running")  # statuses whose objective is a result to rank by (stopped early: where it stopped)
UNSURE = ("damaged", "unknown")  # status.json damaged or missing: ranked after FINISHED, by what the job logged


@dataclass
class Job:
    name: str
    folder: Path
    overrides: dict[str, str] | None  # None: unknown (no readable .hydra/overrides.yaml)
    status: str
    metric: str | list[str] | None = None  # the run's optimized_metric (several: a multi-objective study)
    objective: float | list[float] | None = None
    wall_s: float | None = None
    error: str = ""
    final: dict[str, float] = field(default_factory=dict)  # last value of each scalar
    best_fid: tuple[float, int] | None = None  # (value, iteration)
    protocol: str | None = None  # what its metrics/* were scored under (None: none logged, or an older run)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    config_known: bool = True  # False: no readable .hydra/config.yaml, so its optimized_metric is taken as the sweep's
    defects: list[str] = field(default_factory=list)  # "<path>: what is wrong with it", one per damaged or missing file
    stopped: str = ""  # what ended it early: "stopped at 300/600: mode collapse: ..." (status.json's `stop`)
    floor: dict[str, float] = field(default_factory=dict)  # the real-data floor under its protocol (status.json)


def read_job(folder: Path) -> Job:
    """What a job folder holds. A damaged or missing file is a line of `defects`, never an
    exception: one job's damage must not hide the others, and its readable files still count."""
    defects: list[str] = []
    hydra = folder / ".hydra"
    if hydra.is_dir():
        overrides, config = read_overrides(hydra / "overrides.yaml", defects), read_config(hydra / "config.yaml", defects)
    else:
        defects.append(f"{folder}: no .hydra/ (its overrides and config are unknown)")
        overrides, config = None, None
    status = read_job_status(folder, defects)
    job = Job(folder.name, folder, overrides, job_state(folder, status, defects), optimized_metric(config or {}),
              error=str((status or {}).get("error", "")), config_known=config is not None, defects=defects,
              stopped=stopped_at(status or {}))
    floor = (status or {}).get("metrics_floor")
    if isinstance(floor, dict):
        job.floor = {k: v for k, v in floor.items() if is_number(v)}
    started, ended = (status or {}).get("started"), (status or {}).get("ended")
    if is_number(started) and is_number(ended):
        job.wall_s = ended - started
    read_events(job)
    if job.curves.get("metrics/fid"):
        value, step = min((v, s) for s, v in job.curves["metrics/fid"])
        job.best_fid = (value, step)
    job.objective = objective(status or {}, folder / STATUS_FILE, defects)
    objective_from_events(job)
    return job


def problem(exc: UserError) -> str:
    """A reader's one-paragraph message (which names the file) as a line of a list."""
    return str(exc).rstrip(".")


def read_hydra_file(path: Path, kind: type, what: str, unknown: str, defects: list[str]):
    """One of a job's .hydra/ files as data, nothing resolved, when it holds a `kind`; else None and
    a defect saying what is unknown because of it (Hydra writes `[]` for a job without overrides,
    so an empty file is a truncated one)."""
    try:
        found = read_yaml(path) if path.exists() else None
    except UserError as exc:
        defects.append(f"{problem(exc)} ({unknown})")
        return None
    if not isinstance(found, kind):
        missing = "missing" if not path.exists() else "empty" if found is None else f"not {what}"
        defects.append(f"{path}: {missing} ({unknown})")
        return None
    return found


def read_overrides(path: Path, defects: list[str]) -> dict[str, str] | None:
    """`key=value` overrides; None when the file is missing or damaged."""
    found = read_hydra_file(path, list, "a list of overrides", "its overrides are unknown", defects)
    if found is None:
        return None
    return dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in map(str, found))


def read_config(path: Path, defects: list[str]) -> dict | None:
    """The job's composed config; None when missing or damaged."""
    return read_hydra_file(path, dict, "a config", "its optimized_metric is unknown", defects)


def optimized_metric(config: dict) -> str | list[str] | None:
    metric = config.get("optimized_metric")
    if isinstance(metric, list):  # several: a multi-objective study
        return [str(m) for m in metric]
    return None if metric is None else str(metric)


def read_job_status(folder: Path, defects: list[str]) -> dict | None:
    """The job's status.json: {} when it wrote none, None when it is damaged."""
    try:
        return read_status(folder)
    except DamagedStatus as exc:
        defects.append(str(exc))
        return None


def job_state(folder: Path, status: dict | None, defects: list[str]) -> str:
    """What became of the job. A job writes status.json before it trains, so one that left
    checkpoints or events without it has lost it: its state is unknown, not "not started", and the
    lost file is a defect."""
    if status is None:
        return "damaged"
    if status:
        return status["status"]
    if (folder / "checkpoints").is_dir() or event_files(folder):
        defects.append(f"{folder / STATUS_FILE}: missing (what became of the job is unknown)")
        return "unknown"
    return "not started"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def objective(status: dict, path: Path, defects: list[str]) -> float | list[float] | None:
    """The objective status.json gives, if it is a number (or, several objectives, a list of them)."""
    value = status.get("objective")
    if value is None or is_number(value) or (isinstance(value, list) and value and all(map(is_number, value))):
        return value
    defects.append(f"{path}: its objective is not a number ({shown(value)})")
    return None


def objective_from_events(job: Job) -> None:
    """A job still running, interrupted, or without a readable status.json: its objective is the
    last value it logged of its optimized_metric."""
    if job.objective is None and isinstance(job.metric, str) and job.metric in job.final:
        job.objective = job.final[job.metric]


def event_files(folder: Path) -> list[Path]:
    """The TensorBoard events files of a job (TensorBoard reads any file whose name holds `tfevents`)."""
    return sorted(p for p in folder.glob("*tfevents*") if p.is_file())


def read_events(job: Job) -> None:
    """The job's scalars. A damaged events file is a defect; its curves keep what came before the damage."""
    job.defects += [d for d in (events_defect(p, job.status == "running") for p in event_files(job.folder)) if d]
    try:
        events = EventAccumulator(str(job.folder), size_guidance={"scalars": 0})
        events.Reload()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags().get("scalars", [])}
    except Exception as exc:  # what TensorBoard's parser raises on a damaged file is its own business
        job.defects.append(f"{job.folder}: its TensorBoard events could not be read ({type(exc).__name__}: "
                           f"{shown(str(exc), 160)})")
        return
    for tag, curve in scalars.items():
        short, protocol = short_tag(tag)  # metrics/<protocol>/fid is read as metrics/fid, its protocol kept
        if curve:
            job.curves[short], job.final[short] = curve, curve[-1][1]
            job.protocol = protocol or job.protocol


def events_defect(path: Path, being_written: bool) -> str | None:
    """What is wrong with an events file, if anything: the length and checksum heading each record
    are followed to its end, without reading the records themselves. TensorBoard's reader stops at
    the first damaged record without a word; this says so. The cut-off last record of a running
    job is one still being written, not damage."""
    whole = records = 0
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            while whole < size:
                header = f.read(12)  # the record's length (8 bytes), then its masked CRC-32C (4)
                if len(header) == 12 and masked_crc32c(header[:8]) != struct.unpack("<I", header[8:])[0]:
                    break
                end = whole + 12 + struct.unpack("<Q", header[:8])[0] + 4 if len(header) == 12 else size + 1
                if end > size:
                    if being_written:
                        return None
                    return f"{path}: truncated after {records} whole records (its curves stop there)"
                whole, records = end, records + 1
                f.seek(whole)
    except OSError as exc:
        return f"{path}: unreadable ({type(exc).__name__}: {exc.strerror or exc})"
    if whole == size:
        return None
    if records == 0:
        return f"{path}: not TensorBoard events (its first record fails its checksum, so nothing was read from it)"
    return f"{path}: damaged after {records} whole records, at byte {whole} of {size} (its curves stop there)"


def directions(sweep: Path, defects: list[str]) -> list[str]:
    """The study's direction(s), as the sweep's config gives them (a damaged one: minimize, and a defect)."""
    multirun = sweep / "multirun.yaml"
    try:
        found = lookup(read_yaml(multirun), "hydra.sweeper.direction") if multirun.exists() else None
    except UserError as exc:
        defects.append(f"{problem(exc)} (its direction is taken as minimize)")
        found = None
    found = found or "minimize"
    return [str(found)] if isinstance(found, str) else [str(d) for d in found]


def pareto_front(jobs: list[Job], ways: list[str]) -> set[str]:
    """Names of the finished jobs of a multi-objective sweep that no other finished job beats on
    every objective (at least as good on all, better on one)."""
    sign = [1 if way == "minimize" else -1 for way in ways]
    points = {j.name: [s * v for s, v in zip(sign, j.objective)] for j in jobs if j.status == "completed"
              and isinstance(j.objective, list) and all(math.isfinite(v) for v in j.objective)}
    beats = lambda a, b: all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return {name for name, p in points.items() if not any(beats(q, p) for other, q in points.items() if other != name)}


def looks_like_job(folder: Path) -> bool:
    """A folder a job left something in: its .hydra/, status.json, checkpoints/ or TensorBoard
    events; any one of them, so that a job whose .hydra/ was lost is still listed."""
    if not folder.is_dir() or folder.name.startswith("."):  # .submitit/ and the like
        return False
    return any((folder / name).exists() for name in (".hydra", STATUS_FILE, "checkpoints")) or bool(event_files(folder))


def find_jobs(sweep: Path) -> list[Job]:
    folders = [p for p in sweep.iterdir() if looks_like_job(p)] if sweep.is_dir() else []
    if not folders:
        raise UserError(f"{sweep}: no sweep jobs there (a job folder, directly in the sweep's, holds .hydra/, "
                        f"status.json, checkpoints/ or TensorBoard events; give the sweep's folder).")
    return with_sweep_metric([read_job(f) for f in sorted(folders, key=job_order)])


def with_sweep_metric(jobs: list[Job]) -> list[Job]:
    """A job whose config is unknown is taken to optimize what the other jobs of its sweep do, so
    that the metrics it logged can still rank it."""
    metric = next((j.metric for j in jobs if j.metric), None)
    for job in jobs:
        if not job.config_known and job.metric is None:
            job.metric = metric
            objective_from_events(job)
    return jobs


@dataclass
class Ranking:
    """What the jobs are ranked by: the sweep's objective (`optimized_metric`), else the last FID
    when jobs logged one, else nothing (the jobs keep their order)."""

    name: str | None
    maximize: bool = False

    @classmethod
    def of(cls, jobs: list[Job], maximize: bool) -> Ranking:
        if any(j.objective is not None for j in jobs):
            metric = next((j.metric for j in jobs if j.metric), None) or "objective"
            return cls(metric[0] if isinstance(metric, list) else metric, maximize)  # several: by the first
        if any("metrics/fid" in j.final for j in jobs):
            return cls("last metrics/fid")
        return cls(None)

    def value(self, job: Job) -> float | None:
        value = job.final.get("metrics/fid") if self.name == "last metrics/fid" else job.objective if self.name else None
        value = value[0] if isinstance(value, list) else value
        return value if value is not None and math.isfinite(value) else None

    def describe(self) -> str:
        if self.name is None:
            return "Not ranked: the jobs have no objective (optimized_metric) and logged no FID (eval_every)."
        return f"Ranked by {self.name} ({'higher' if self.maximize else 'lower'} is better)."


def ranked(jobs: list[Job], ranking: Ranking) -> list[Job]:
    """By value: the finished jobs first, then those whose status.json is damaged or missing (what
    they logged is a value, but whether they ended well is unknown), then those stopped early (by
    the value where they stopped: never among the finished), then the rest in their order."""
    def key(job: Job) -> tuple[int, float]:
        value = ranking.value(job)
        tier = 3 if value is None else 0 if job.status in FINISHED else 1 if job.status in UNSURE else 2
        return (tier, 0.0 if tier == 3 else -value if ranking.maximize else value)
    return sorted(jobs, key=key)


# What a plot's axis calls a logged tag: people read "FID", not "metrics/fid".
NAMES = {"metrics/fid": "FID", "metrics/kid": "KID", "metrics/is": "Inception score", "metrics/precision": "precision",
         "metrics/recall": "recall", "metrics/density": "density", "metrics/coverage": "coverage",
         "metrics/intra_fid": "intra-class FID", "metrics/modes_covered": "classes covered",
         "metrics/kl_uniform": "KL(classes || uniform)", "loss/d": "D loss", "loss/g": "G loss"}


def axis_name(tag: str) -> str:
    return NAMES.get(tag.removeprefix("last "), tag)


def label(job: Job, keys: list[str], among: list[str] | None = None) -> str:
    """A job as its overrides name it (`latent_dim=32, generator.lr=0.0002`): each key by the
    shortest end of its name no other swept key (`among`, else `keys`) shares, so G's and D's
    learning rates stay apart."""
    if job.overrides is None:
        return f"job {job.name} (overrides unknown)"
    names = short_keys(among or keys)
    return ", ".join(f"{names[k]}={short_value(job.overrides.get(k, ''))}" for k in keys) or f"job {job.name}"


def swept_keys(jobs: list[Job], searched: list[str] = ()) -> list[str]:
    """The keys the sweep searched (`searched`: its search space and command line, even a key whose
    sampled values happen to agree) and the override keys whose values differ between jobs (all of
    them when there is one job); jobs whose overrides are unknown have no say."""
    jobs = [job for job in jobs if job.overrides is not None]
    keys = sorted({k for job in jobs for k in job.overrides})
    varying_keys = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    found = [k for k in searched if any(k in job.overrides for job in jobs)]
    return found + [k for k in varying_keys if k not in found] or keys


def searched_keys(sweep: Path, defects: list[str]) -> list[str]:
    """The keys the sweep's own arguments vary (multirun.yaml: its search space and command line), as data."""
    multirun = sweep / "multirun.yaml"
    try:
        config = read_yaml(multirun) if multirun.exists() else None
    except UserError:  # said once, by directions()
        return []
    params = lookup(config, "hydra.sweeper.params") if isinstance(config, dict) else None
    task = lookup(config, "hydra.overrides.task") if isinstance(config, dict) else None
    arguments = [f"{k}={v}" for k, v in params.items()] if isinstance(params, dict) else []
    arguments += [str(o) for o in task if not str(o).lstrip("+~").startswith("hydra.")] if isinstance(task, list) else []
    try:
        return varying(arguments)
    except Exception as exc:  # Hydra's parser on a hand-edited file
        defects.append(f"{multirun}: its sweep arguments could not be read ({type(exc).__name__}); the swept keys are "
                       f"taken from the jobs' overrides")
        return []


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows(jobs: list[Job], keys: list[str], ranking: Ranking, front: set[str] | None = None) -> list[dict[str, str]]:
    """One row per job, ranked; the first row is the real-data floor when the jobs recorded one."""
    ranked_by = ranking_column(ranking)
    table = []
    for rank, job in enumerate(jobs, 1):
        value = ", ".join(map(fmt, job.objective)) if isinstance(job.objective, list) else fmt(ranking.value(job))
        row = {"rank": str(rank), "job": job.name, "status": job.status, "ended early": job.stopped}
        if ranked_by:
            row[ranked_by] = value
        if front is not None:
            row["Pareto front"] = "★" if job.name in front else ""
        row.update({k: UNKNOWN if job.overrides is None else job.overrides.get(k, "") for k in keys})
        row.update({f"final {m} {BETTER[m]}": fmt(job.final.get(f"metrics/{m}")) for m in METRICS})
        row["best fid ↓ (iteration)"] = f"{job.best_fid[0]:.4g} ({job.best_fid[1]})" if job.best_fid else ""
        row["loss d / g"] = " / ".join(fmt(job.final.get(tag)) for tag in ("loss/d", "loss/g"))
        row["wall s"] = f"{job.wall_s:.0f}" if job.wall_s is not None else ""
        row["error"] = job.error
        row["defects"] = "; ".join(within(job, line) for line in job.defects)
        table.append(row)
    floor = sweep_floor(jobs)
    if floor and table:
        row = dict.fromkeys(table[0], "")
        row.update({"rank": "floor", "job": "real data", "status": f"real images as samples ({floor[0]})"})
        if ranked_by and ranking.name and ranking.name.removeprefix("last ").removeprefix("metrics/") in floor[1]:
            row[ranked_by] = fmt(floor[1][ranking.name.removeprefix("last ").removeprefix("metrics/")])
        row.update({f"final {m} {BETTER[m]}": fmt(floor[1].get(m)) for m in METRICS})
        table.insert(0, row)
    return table


def ranking_column(ranking: Ranking) -> str | None:
    """The ranking column's header: what it ranks by and which way is better (`FID ↓ (ranked by)`)."""
    if ranking.name is None:
        return None
    arrow = "↑" if ranking.maximize else "↓"
    return f"{axis_name(ranking.name)} {arrow} (ranked by{', last' if ranking.name.startswith('last ') else ''})"


def sweep_floor(jobs: list[Job]) -> tuple[str, dict[str, float]] | None:
    """(protocol, scores) of the real-data floor the jobs recorded, when they share one protocol."""
    floors = {j.protocol: j.floor for j in jobs if j.floor and j.protocol}
    return next(iter(floors.items())) if len(floors) == 1 else None


def within(job: Job, defect: str) -> str:
    """A defect as the job's row says it: the file relative to the job's folder, the folder itself unsaid."""
    return defect.removeprefix(f"{job.folder}/").removeprefix(f"{job.folder}: ")


def mean_std(values: list[float]) -> str:
    """`mean ± std (n)`, the sample standard deviation; a lone value has none."""
    if not values:
        return ""
    spread = f" ± {two_digits(statistics.stdev(values))}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.4g}{spread} (n={len(values)})"


def two_digits(x: float) -> str:
    """About two significant digits, without an exponent: 143, 13, 4.0, 0.014."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.{max(0, 1 - math.floor(math.log10(abs(x))))}f}"


def seed_rows(jobs: list[Job], keys: list[str], ranking: Ranking) -> list[dict[str, str]]:
    """Jobs that differ only in `seed` as one row each: mean ± std (n) of the objective (or what the
    jobs are ranked by) and of every final metric, over the seeds whose job finished; the rows
    ranked on the mean. Empty when `seed` was not swept."""
    if "seed" not in keys:
        return []
    others = [k for k in keys if k != "seed"]
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in (j for j in jobs if j.overrides is not None):  # unknown overrides: which group is unknown
        groups.setdefault(tuple(job.overrides.get(k, "") for k in others), []).append(job)
    scored = []
    for values, members in groups.items():
        done = [j for j in members if j.status == "completed"]
        ranks = [v for v in (ranking.value(j) for j in done) if v is not None]
        seeds = sorted((j.overrides.get("seed", "") for j in members), key=lambda v: (as_number(v) is None, as_number(v) or 0, v))
        row = {**dict(zip(others, values)), "seeds": ",".join(seeds), "finished": f"{len(done)}/{len(members)}"}
        if ranking.name and ranking.name.removeprefix("last ") not in [f"metrics/{m}" for m in METRICS]:
            row[ranking.name] = mean_std(ranks)  # a loss as the objective: its own column
        for m in METRICS:
            row[f"{m} {BETTER[m]}"] = mean_std([j.final[f"metrics/{m}"] for j in done
                                                 if math.isfinite(j.final.get(f"metrics/{m}", math.nan))])
        mean = statistics.fmean(ranks) if ranks else None
        scored.append((mean is None, -mean if mean is not None and ranking.maximize else mean or 0.0, row))
    return [row for *_, row in sorted(scored, key=lambda t: t[:2])]




def write_tables(table: list[dict[str, str]], out: Path, name: str = "jobs") -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    write_text(out / f"{name}.csv", text.getvalue())
    columns = [c for c in table[0] if any(r[c] for r in table)]  # a column with nothing in it says nothing
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(short(r[c]).replace("|", "\\|") for c in columns) + " |" for r in table]
    write_text(out / f"{name}.md", "\n".join(lines) + "\n")


def save_figure(fig, path: Path) -> None:
    """Whole or not at all (gan/files.py), then closed, so that the next plot starts empty."""
    import matplotlib.pyplot as plt

    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))  # legends beside kept
    plt.close(fig)


def short(text: str) -> str:
    """Long numbers (sampled learning rates) to 4 significant digits, for the Markdown table."""
    number = as_number(text)
    return f"{number:.4g}" if number is not None and len(text) > 8 else text


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def write_plots(jobs: list[Job], keys: list[str], out: Path, ranking: Ranking) -> list[str]:
    """The plots that have something to show; returns a line for each one left out, and why. Each
    `objective_vs_<key>` colours its points by the other swept keys, so a grid's points can be told
    apart; a plot of the FID draws the real-data floor as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skipped = []
    floor = sweep_floor(jobs)
    scored = [j for j in jobs if ranking.value(j) is not None and j.overrides is not None]  # unknown overrides: no x
    for key in keys:
        if not scored:
            skipped.append(f"objective_vs_{key}.png: no job has a value to rank by")
            continue
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        values = [j.overrides.get(key, "") for j in scored]
        numbers = [as_number(v) for v in values]
        categories = sorted(set(values))
        x = numbers if all(n is not None for n in numbers) else [categories.index(v) for v in values]
        others = [k for k in keys if k != key]
        group = {j.name: label(j, others, among=keys) if others else "" for j in scored}
        groups = sorted(set(group.values()))
        coloured = 1 < len(groups) <= MAX_GROUPS and len(groups) < len(scored)  # a grid's other keys, not every point its own
        for colour, name in enumerate(groups if coloured else [None]):
            for pruned in (False, True):  # a trial stopped early: its value is where it stopped, drawn hollow
                points = [(xi, ranking.value(j)) for xi, j in zip(x, scored)
                          if (j.status in ("pruned", "stopped")) == pruned and name in (None, group[j.name])]
                if points:
                    tint = matplotlib.colormaps["tab10"](colour % 10)  # not the style's cycle, which Optuna's views change
                    ax.scatter(*zip(*points), facecolors="none" if pruned else tint, edgecolors=tint,
                               label=early(name) if pruned else name or "finished")
        for xi, job in zip(x, scored):  # each point says which job it is, as the table names it
            number = job_number(job.folder)
            ax.annotate(job.name if number is None else str(number), (xi, ranking.value(job)), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        plotted_floor = draw_floor(ax, floor, ranking.name)
        if coloured or plotted_floor or any(j.status in ("pruned", "stopped") for j in scored):
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        if x is numbers:
            if min(numbers) > 0 and max(numbers) / min(numbers) > 10:  # learning rates: a log axis
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(categories)), categories, rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{axis_name(ranking.name)} at the end ({'higher' if ranking.maximize else 'lower'} is better)")
        fig.tight_layout()
        save_figure(fig, out / f"objective_vs_{key.replace('/', '_')}.png")
    metric = next((j.metric for j in jobs if j.metric), None)
    metric = metric[0] if isinstance(metric, list) else metric  # several: the first
    tag = "metrics/fid" if any("metrics/fid" in j.curves for j in jobs) else metric
    drawn = [j for j in jobs if tag in j.curves][:CURVE_JOBS]
    if not drawn:
        return [*skipped, "curves.png: no job logged an FID (eval_every) or an optimized_metric"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for job in drawn:
        steps, values = zip(*job.curves[tag])
        number = job_number(job.folder)
        ax.plot(steps, values, marker="o", label=f"job {job.name if number is None else number}: {label(job, keys)}")
    draw_floor(ax, floor, tag)
    ax.set_xlabel("iteration")
    ax.set_ylabel(axis_name(tag))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.2), borderaxespad=0)  # under the curves, not on them
    fig.tight_layout()
    save_figure(fig, out / "curves.png")
    return skipped


def early(group: str | None) -> str:
    """The legend of the hollow points: jobs stopped early, drawn where they stopped."""
    return f"{group} (stopped early: where it stopped)" if group else "stopped early (where it stopped)"


def draw_floor(ax, floor: tuple[str, dict[str, float]] | None, tag: str | None) -> bool:
    """The real-data floor of `tag` (a metric the floor has) as a dashed line; whether one was drawn."""
    name = (tag or "").removeprefix("last ").removeprefix("metrics/")
    if floor is None or name not in floor[1]:
        return False
    ax.axhline(floor[1][name], color="grey", linestyle="--", linewidth=1,
               label=f"real data: {floor[1][name]:.4g} ({floor[0]})")
    return True


def stored_study(sweep: Path, defects: list[str], storage: str | None = None, name: str | None = None):
    """The Optuna study of an Optuna sweep (named `name`, else as the sweep recorded it), or None: in
    `storage` when given, else where the sweep's multirun.yaml says it lives (a database server, a
    journal), else `optuna.db` beside its jobs.
    A storage that cannot be read or reached is a defect, and the report is made from the job folders alone."""
    url, recorded_name, recorded = storage, None, recorded_storage(sweep)
    if url is None and recorded is not None:
        url, recorded_name = recorded
    db = sweep / "optuna.db"
    if url is None or url == f"sqlite:///{db}":
        if not db.exists():
            return None
        if db.stat().st_size == 0:  # opened, an empty file would be given Optuna's tables: the report would write into it
            defects.append(f"{db}: could not be read (an empty file); Optuna's views of the study are left out")
            return None
        url = f"sqlite:///{db}"
    import optuna

    from gan.sweeps.storages import open_storage
    from gan.sweeps.storages import shown as shown_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = str(db) if url == f"sqlite:///{db}" else shown_url(url)
    skipped = "Optuna's views of the study are left out"
    try:
        opened = open_storage(url)
        names = ([name] if name else study_names(sweep, defects)) or ([recorded_name] if recorded_name else []) \
            or optuna.study.get_all_study_names(opened)
        study = optuna.load_study(study_name=names[0], storage=opened) if names else None
        if study is not None:
            _ = study.directions, study.trials  # read here, so that a damaged file fails here and not in a plot
    except Exception as exc:  # SQLAlchemy's and Optuna's errors for a damaged database share no base class
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        defects.append(f"{where}: could not be read ({type(exc).__name__}: {shown(first, 160)}); {skipped}")
        return None
    if study is None:
        defects.append(f"{where}: holds no study; {skipped}")
    return study


def folder_of_study(url: str, name: str | None) -> Path:
    """The sweep folder of the study `name` (or the storage's only study) in the storage `url`: the
    folder its trials' jobs recorded (user attribute run_folder) as theirs lie in."""
    import optuna

    from gan.sweeps.storages import check, local_file, open_storage
    from gan.sweeps.storages import shown as shown_url

    file = local_file(url)
    if file is not None and not file.is_file():
        raise UserError(f"sweep={url}: {file} does not exist; give the storage the sweep used "
                        f"(its multirun.yaml says hydra.sweeper.storage) or the sweep's folder.")
    check(url, "sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    names = optuna.study.get_all_study_names(storage)
    if name is None and len(names) != 1:
        raise UserError(f"sweep={shown_url(url)}: the storage holds {len(names)} studies"
                        f"{' (' + ', '.join(sorted(names)) + ')' if names else ''}; name one with study=<name>.")
    if (name or names[0]) not in names:
        raise UserError(f"study={name}: no such study in {shown_url(url)}; it holds {', '.join(sorted(names)) or 'none'}.")
    trials = optuna.load_study(study_name=name or names[0], storage=storage).trials
    parents = {Path(t.user_attrs["run_folder"]).parent for t in trials if t.user_attrs.get("run_folder")}
    seen = sorted(p for p in parents if p.is_dir())
    if len(seen) != 1:
        said = ", ".join(map(str, sorted(parents))) or "none recorded (no trial's job has started)"
        raise UserError(f"sweep={shown_url(url)}: study {name or names[0]}'s job folders are not one folder on this "
                        f"machine (recorded: {said}); run gan.report where they are, or give sweep=<folder> "
                        f"storage=<url>.")
    return seen[0]


def recorded_storage(sweep: Path) -> tuple[str, str | None] | None:
    """(storage, study name) of an Optuna sweep whose multirun.yaml names a storage other than its own
    optuna.db (`hydra.sweeper.storage` as plain text: an interpolation is the default, beside the jobs)."""
    path = sweep / "multirun.yaml"
    try:
        config = read_yaml(path) if path.exists() else None
    except UserError:
        return None
    url, name = lookup(config, "hydra.sweeper.storage"), lookup(config, "hydra.sweeper.study_name")
    if not isinstance(url, str) or "${" in url:
        return None
    return url, name if isinstance(name, str) else None


def study_names(sweep: Path, defects: list[str]) -> list[str]:
    """The study's name as the sweeper recorded it (`optimization_results.yaml`), if it did."""
    results = sweep / "optimization_results.yaml"
    try:
        name = lookup(read_yaml(results), "study_name") if results.exists() else None
    except UserError as exc:
        defects.append(f"{problem(exc)} (the study is looked up in optuna.db)")
        return []
    return [str(name)] if name else []


def optuna_plots(study, out: Path) -> list[str]:
    """Optuna's own views of a study (its optimization history, the parameters' importance, and the
    Pareto front of a multi-objective one); notes on what was drawn."""
    if study is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    states = [t.state.name.lower() for t in study.trials]
    notes = [f"Optuna study {study.study_name}: {len(states)} trials, " + ", ".join(
        f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail", "running") if states.count(s)) + "."]
    complete = sum(s == "complete" for s in states)
    if 2 <= complete < FEW_TRIALS and len(study.directions) == 1:
        notes.append(f"optuna_importance.png rests on {complete} complete trials: below {FEW_TRIALS}, which key seems "
                     f"to matter is mostly chance.")
    plots = [("optuna_history.png", views.plot_optimization_history, complete >= 1 and len(study.directions) == 1),
             ("optuna_importance.png", views.plot_param_importances, complete >= 2 and len(study.directions) == 1),
             ("optuna_pareto_front.png", views.plot_pareto_front, complete >= 1 and len(study.directions) > 1)]
    with warnings.catch_warnings(), plt.rc_context():  # Optuna's views set the ggplot style: kept to them
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        for name, view, possible in plots:
            if not possible:
                continue
            try:
                view(study)
            except Exception as exc:  # e.g. importance of a parameter that never varied
                notes.append(f"Left out {name}: {exc}.")
                continue
            plt.gcf().set_size_inches(7, 4.5)
            plt.tight_layout()
            save_figure(plt.gcf(), out / name)
            plt.close("all")
    return notes


def report(sweep: str, storage: str | None = None, study: str | None = None) -> Path:
    if "://" in sweep:  # a study's storage instead of a folder: its trials name their folders
        sweep, storage = str(folder_of_study(sweep, study)), sweep
    folder = Path(sweep)
    jobs = find_jobs(folder)
    defects: list[str] = []  # of the sweep's own files; each job keeps its own
    study = stored_study(folder, defects, storage, study)
    ways = [d.name.lower() for d in study.directions] if study is not None else directions(folder, defects)
    ranking = Ranking.of(jobs, ways[0] == "maximize")
    jobs = ranked(jobs, ranking)
    keys = swept_keys(jobs, searched_keys(folder, defects))
    out = folder / "report"  # made by the first write (gan/files.py), which names the folder if it cannot be
    front = pareto_front(jobs, ways) if len(ways) > 1 else None
    write_tables(rows(jobs, keys, ranking, front), out)
    notes = [ranking.describe(), *protocol_notes(jobs),
             *(f"Left out {line}." for line in write_plots(jobs, keys, out, ranking))]
    if front is not None:
        notes.append(f"Several objectives ({', '.join(ways)}): ★ marks the {len(front)} jobs of the Pareto front.")
    seeds = seed_rows(jobs, keys, ranking)
    if seeds:
        write_tables(seeds, out, "seeds")
        notes.append("seeds.md: the jobs that differ only in seed, as mean ± std (n) over the seeds that finished, "
                     "ranked on the mean.")
    notes += optuna_plots(study, out)
    notes += best_samples(jobs[0], keys, ranking, out)
    notes += defect_notes(jobs, defects, ranking)
    write_text(out / "notes.txt", "\n".join(notes) + "\n")
    return out


def best_samples(best: Job, keys: list[str], ranking: Ranking, out: Path) -> list[str]:
    """The best job's last sample grid (images/<iteration>.png) with a line above it naming the job,
    what it changed and its score; a note when there is none. The grid is read before the write, so
    that an unreadable one is not taken for an unwritable report."""
    from PIL import Image, ImageDraw, ImageFont

    grids = sorted((p for p in (best.folder / "images").glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not grids or ranking.value(best) is None:
        return ["Left out best_samples.png: no job ranks first."]
    try:
        grid = Image.open(grids[-1])
        grid.load()
    except OSError as exc:
        return [f"Left out best_samples.png: {grids[-1]} could not be read ({type(exc).__name__}: {exc.strerror or exc})."]
    number = job_number(best.folder)
    lines = [f"best: job {best.name if number is None else number}, {axis_name(ranking.name)} {ranking.value(best):.4g}",
             *textwrap.wrap(label(best, keys), max(30, grid.width // 9))]
    font = ImageFont.load_default(size=16)
    top = 22 * len(lines) + 4
    sheet = Image.new("RGB", (grid.width, grid.height + top), "white")
    sheet.paste(grid.convert("RGB"), (0, top))
    for row, line in enumerate(lines):
        ImageDraw.Draw(sheet).text((8, 4 + 22 * row), line, fill="black", font=font)
    write_atomically(out / "best_samples.png", lambda f: sheet.save(f, format="PNG"))
    return []


def protocol_notes(jobs: list[Job]) -> list[str]:
    """Which protocol the metrics were scored under; jobs under different ones do not compare."""
    protocols = sorted({j.protocol for j in jobs if j.protocol})
    if not protocols:
        return []
    if len(protocols) == 1:
        return [f"Metrics scored under the {protocols[0]} protocol."]
    named = "; ".join(f"{p}: {', '.join(sorted(j.name for j in jobs if j.protocol == p))}" for p in protocols)
    return [f"Metrics scored under {len(protocols)} protocols, whose numbers do not compare ({named})."]


def defect_notes(jobs: list[Job], defects: list[str], ranking: Ranking) -> list[str]:
    """Every damaged or missing file, one line each, naming it and what is wrong with it."""
    lines = [*defects, *(line for job in jobs for line in job.defects)]
    if not lines:
        return []
    notes = [f"Damaged or missing files ({len(lines)}); the report is made from what could be read:", *lines]
    if any(j.status in UNSURE and ranking.value(j) is not None for j in jobs):
        notes.append("Jobs whose status.json is damaged or missing rank after the finished ones, by what they logged.")
    return notes


@dataclass
class Args:
    sweep: str = "???"  # the sweep's folder (outputs/multirun/<date>/<time>, outputs/optuna/<study>), or its study's storage URL
    storage: Optional[str] = None  # the study's storage (a database URL, journal:///...); null: as the sweep recorded it
    study: Optional[str] = None  # the study's name (null: as the sweep recorded it, or the storage's only study)


def main() -> None:
    out = run(lambda args: report(args.sweep, args.storage, args.study), Args, __doc__)
    print((out / "jobs.md").read_text())
    if (out / "seeds.md").exists():
        print((out / "seeds.md").read_text())
    print((out / "notes.txt").read_text(), end="")
    print(f"Report written to {out}/")


if __name__ == "__main__":
    main()
