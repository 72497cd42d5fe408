"""Compare the jobs of a sweep: `python -m gan.report <sweep folder>`.

Writes into `<sweep folder>/report/`: `jobs.csv` and `jobs.md` (one row per job: its overrides,
status, objective, final and best metrics, wall time; ranked by the objective), one
`objective_vs_<key>.png` per swept key, `curves.png` (the FID, or the objective, over the
iterations of the best jobs, each labelled by its overrides) and `best_samples.png` (the best
job's last grid). Jobs are ranked by the sweep's objective (`optimized_metric`), else by their
last FID; `notes.txt` says which, and names any plot left out because it would be empty. It reads what
each job left behind (.hydra/, status.json, TensorBoard events), so it works on a sweep that is
still running, was interrupted, or has failed jobs.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan.errors import UserError
from gan.metrics import BETTER, METRICS
from gan.status import read_status

CURVE_JOBS = 5  # best jobs drawn in curves.png


@dataclass
class Job:
    name: str
    folder: Path
    overrides: dict[str, str]
    status: str
    metric: str | None = None  # the run's optimized_metric
    objective: float | None = None
    wall_s: float | None = None
    error: str = ""
    final: dict[str, float] = field(default_factory=dict)  # last value of each scalar
    best_fid: tuple[float, int] | None = None  # (value, iteration)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def read_job(folder: Path) -> Job:
    overrides = OmegaConf.load(folder / ".hydra" / "overrides.yaml")
    parsed = dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides)
    config = OmegaConf.load(folder / ".hydra" / "config.yaml")
    status = read_status(folder)
    job = Job(folder.name, folder, parsed, status.get("status", "not started"), config.get("optimized_metric"),
              error=status.get("error", ""))
    if "ended" in status:
        job.wall_s = status["ended"] - status["started"]
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    for tag in events.Tags().get("scalars", []):
        job.curves[tag] = [(e.step, e.value) for e in events.Scalars(tag)]
        job.final[tag] = job.curves[tag][-1][1]
    if job.curves.get("metrics/fid"):
        value, step = min((v, s) for s, v in job.curves["metrics/fid"])
        job.best_fid = (value, step)
    job.objective = status.get("objective")
    if job.objective is None and job.metric in job.final:  # still running or interrupted
        job.objective = job.final[job.metric]
    return job


def find_jobs(sweep: Path) -> list[Job]:
    folders = [p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml")]
    if not folders:
        raise UserError(f"{sweep}: no sweep jobs there (job folders hold .hydra/overrides.yaml; give the sweep's folder).")
    order = lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)  # 0, 1, ..., 10, then names
    return [read_job(f) for f in sorted(folders, key=order)]


def direction(sweep: Path) -> str:
    multirun = sweep / "multirun.yaml"
    if multirun.exists():
        return str(OmegaConf.select(OmegaConf.load(multirun), "hydra.sweeper.direction", default="minimize"))
    return "minimize"


@dataclass
class Ranking:
    """What the jobs are ranked by: the sweep's objective (`optimized_metric`), else the last FID
    when jobs logged one, else nothing (the jobs keep their order)."""

    name: str | None
    maximize: bool = False

    @classmethod
    def of(cls, jobs: list[Job], maximize: bool) -> Ranking:
        if any(j.objective is not None for j in jobs):
            return cls(next((j.metric for j in jobs if j.metric), None) or "objective", maximize)
        if any("metrics/fid" in j.final for j in jobs):
            return cls("last metrics/fid")
        return cls(None)

    def value(self, job: Job) -> float | None:
        value = job.final.get("metrics/fid") if self.name == "last metrics/fid" else job.objective if self.name else None
        return value if value is not None and math.isfinite(value) else None

    def describe(self) -> str:
        if self.name is None:
            return "Not ranked: the jobs have no objective (optimized_metric) and logged no FID (eval_every)."
        return f"Ranked by {self.name} ({'higher' if self.maximize else 'lower'} is better)."


def ranked(jobs: list[Job], ranking: Ranking) -> list[Job]:
    def key(job: Job) -> tuple[bool, float]:
        value = ranking.value(job)
        usable = value is not None and job.status in ("completed", "stopped", "running")
        return (not usable, -value if usable and ranking.maximize else value if usable else 0.0)
    return sorted(jobs, key=key)


# What a plot's axis calls a logged tag: people read "FID", not "metrics/fid".
NAMES = {"metrics/fid": "FID", "metrics/kid": "KID", "metrics/is": "Inception score", "metrics/precision": "precision",
         "metrics/recall": "recall", "metrics/modes_covered": "classes covered", "metrics/kl_uniform": "KL(classes || uniform)",
         "loss/d": "D loss", "loss/g": "G loss"}


def axis_name(tag: str) -> str:
    return NAMES.get(tag.removeprefix("last "), tag)


def label(job: Job, keys: list[str]) -> str:
    """A job as its overrides name it (`latent_dim=32, lr=0.0002`), the last part of each key."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={short(job.overrides.get(k, ''))}" for k in keys) or f"job {job.name}"


def swept_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs (all of them when there is one job)."""
    keys = sorted({k for job in jobs for k in job.overrides})
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return varying or keys


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows(jobs: list[Job], keys: list[str]) -> list[dict[str, str]]:
    table = []
    for rank, job in enumerate(jobs, 1):
        row = {"rank": str(rank), "job": job.name, "status": job.status, "objective": fmt(job.objective)}
        row.update({k: job.overrides.get(k, "") for k in keys})
        row.update({f"final {m} {BETTER[m]}": fmt(job.final.get(f"metrics/{m}")) for m in METRICS})
        row["best fid ↓ (iteration)"] = f"{job.best_fid[0]:.4g} ({job.best_fid[1]})" if job.best_fid else ""
        row["loss d / g"] = " / ".join(fmt(job.final.get(tag)) for tag in ("loss/d", "loss/g"))
        row["wall s"] = f"{job.wall_s:.0f}" if job.wall_s is not None else ""
        row["error"] = job.error
        table.append(row)
    return table


def write_tables(table: list[dict[str, str]], out: Path) -> None:
    with open(out / "jobs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    columns = [c for c in table[0] if c != "error" or any(r["error"] for r in table)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(short(r[c]).replace("|", "\\|") for c in columns) + " |" for r in table]
    (out / "jobs.md").write_text("\n".join(lines) + "\n")


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
    """The plots that have something to show; returns a line for each one left out, and why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skipped = []
    scored = [j for j in jobs if ranking.value(j) is not None]
    for key in keys:
        if not scored:
            skipped.append(f"objective_vs_{key}.png: no job has a value to rank by")
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        values = [j.overrides.get(key, "") for j in scored]
        numbers = [as_number(v) for v in values]
        if all(n is not None for n in numbers):
            ax.scatter(numbers, [ranking.value(j) for j in scored])
            if min(numbers) > 0 and max(numbers) / min(numbers) > 10:  # learning rates: a log axis
                ax.set_xscale("log")
        else:
            categories = sorted(set(values))
            ax.scatter([categories.index(v) for v in values], [ranking.value(j) for j in scored])
            ax.set_xticks(range(len(categories)), categories, rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{axis_name(ranking.name)} at the end ({'higher' if ranking.maximize else 'lower'} is better)")
        fig.tight_layout()
        fig.savefig(out / f"objective_vs_{key.replace('/', '_')}.png", dpi=100)
        plt.close(fig)
    tag = "metrics/fid" if any("metrics/fid" in j.curves for j in jobs) else jobs[0].metric
    drawn = [j for j in jobs if tag in j.curves][:CURVE_JOBS]
    if not drawn:
        return [*skipped, "curves.png: no job logged an FID (eval_every) or an optimized_metric"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for job in drawn:
        steps, values = zip(*job.curves[tag])
        ax.plot(steps, values, marker="o", label=label(job, keys))
    ax.set_xlabel("iteration")
    ax.set_ylabel(axis_name(tag))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    return skipped


def report(sweep: str) -> Path:
    folder = Path(sweep)
    jobs = find_jobs(folder)
    ranking = Ranking.of(jobs, direction(folder) == "maximize")
    jobs = ranked(jobs, ranking)
    keys = swept_keys(jobs)
    out = folder / "report"
    out.mkdir(exist_ok=True)
    write_tables(rows(jobs, keys), out)
    notes = [ranking.describe(), *(f"Left out {line}." for line in write_plots(jobs, keys, out, ranking))]
    grids = sorted((jobs[0].folder / "images").glob("*.png"), key=lambda p: int(p.stem))
    if grids and ranking.value(jobs[0]) is not None:
        shutil.copyfile(grids[-1], out / "best_samples.png")
    else:
        notes.append("Left out best_samples.png: no job ranks first.")
    (out / "notes.txt").write_text("\n".join(notes) + "\n")
    return out


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    try:
        out = report(sys.argv[1])
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    print((out / "jobs.md").read_text())
    print((out / "notes.txt").read_text(), end="")
    print(f"Report written to {out}/")


if __name__ == "__main__":
    main()
