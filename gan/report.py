"""Compare the jobs of a sweep: `python -m gan.report sweep=<sweep folder>`.

Writes into `<sweep folder>/report/`: `jobs.csv` and `jobs.md` (one row per job: its overrides,
status, objective, final and best metrics, wall time; ranked by the objective), one
`objective_vs_<key>.png` per swept key, `curves.png` (the FID, or the objective, over the
iterations of the best jobs, each labelled by its overrides) and `best_samples.png` (the best
job's last grid). Jobs are ranked by the sweep's objective (`optimized_metric`), else by their
last FID; `notes.txt` says which, and names any plot left out because it would be empty. Jobs
that differ only in `seed` are also grouped in `seeds.md`/`seeds.csv`: mean ± std (n) of every
score, ranked on the mean. A multi-objective sweep marks its Pareto front (★). An Optuna sweep
adds Optuna's views of its study (optuna_history.png, optuna_importance.png, or
optuna_pareto_front.png) and counts its complete, pruned and failed trials. It reads what
each job left behind (.hydra/, status.json, TensorBoard events), so it works on a sweep that is
still running, was interrupted, or has failed jobs.
"""

from __future__ import annotations

import csv
import math
import shutil
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan.config.cli import run
from gan.config.untrusted import lookup, read_yaml
from gan.errors import UserError
from gan.metrics import BETTER, METRICS
from gan.run.status import read_status

CURVE_JOBS = 5  # best jobs drawn in curves.png


@dataclass
class Job:
    name: str
    folder: Path
    overrides: dict[str, str]
    status: str
    metric: str | list[str] | None = None  # the run's optimized_metric (several: a multi-objective study)
    objective: float | list[float] | None = None
    wall_s: float | None = None
    error: str = ""
    final: dict[str, float] = field(default_factory=dict)  # last value of each scalar
    best_fid: tuple[float, int] | None = None  # (value, iteration)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def read_job(folder: Path) -> Job:
    overrides = [str(o) for o in read_yaml(folder / ".hydra" / "overrides.yaml") or []]  # as data: nothing resolved
    parsed = dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides)
    config = read_yaml(folder / ".hydra" / "config.yaml") or {}
    status = read_status(folder)
    metric = config.get("optimized_metric") if isinstance(config, dict) else None
    metric = metric if metric is None or isinstance(metric, str) else list(metric)  # several: a multi-objective study
    job = Job(folder.name, folder, parsed, status.get("status", "not started"), metric, error=status.get("error", ""))
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
    if job.objective is None and isinstance(job.metric, str) and job.metric in job.final:  # still running or interrupted
        job.objective = job.final[job.metric]
    return job


def directions(sweep: Path) -> list[str]:
    """The study's direction(s), as the sweep's config gives them."""
    multirun = sweep / "multirun.yaml"
    found = lookup(read_yaml(multirun), "hydra.sweeper.direction") if multirun.exists() else None
    found = found or "minimize"
    return [str(found)] if isinstance(found, str) else [str(d) for d in found]


def pareto_front(jobs: list[Job], ways: list[str]) -> set[str]:
    """Names of the finished jobs of a multi-objective sweep that no other finished job beats on
    every objective (at least as good on all, better on one)."""
    sign = [1 if way == "minimize" else -1 for way in ways]
    points = {j.name: [s * v for s, v in zip(sign, j.objective)] for j in jobs if j.status in ("completed", "stopped")
              and isinstance(j.objective, list) and all(math.isfinite(v) for v in j.objective)}
    beats = lambda a, b: all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return {name for name, p in points.items() if not any(beats(q, p) for other, q in points.items() if other != name)}


def find_jobs(sweep: Path) -> list[Job]:
    folders = [p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml")]
    if not folders:
        raise UserError(f"{sweep}: no sweep jobs there (job folders hold .hydra/overrides.yaml; give the sweep's folder).")
    order = lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)  # 0, 1, ..., 10, then names
    return [read_job(f) for f in sorted(folders, key=order)]


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


def rows(jobs: list[Job], keys: list[str], front: set[str] | None = None) -> list[dict[str, str]]:
    table = []
    for rank, job in enumerate(jobs, 1):
        objective = ", ".join(map(fmt, job.objective)) if isinstance(job.objective, list) else fmt(job.objective)
        row = {"rank": str(rank), "job": job.name, "status": job.status, "objective": objective}
        if front is not None:
            row["Pareto front"] = "★" if job.name in front else ""
        row.update({k: job.overrides.get(k, "") for k in keys})
        row.update({f"final {m} {BETTER[m]}": fmt(job.final.get(f"metrics/{m}")) for m in METRICS})
        row["best fid ↓ (iteration)"] = f"{job.best_fid[0]:.4g} ({job.best_fid[1]})" if job.best_fid else ""
        row["loss d / g"] = " / ".join(fmt(job.final.get(tag)) for tag in ("loss/d", "loss/g"))
        row["wall s"] = f"{job.wall_s:.0f}" if job.wall_s is not None else ""
        row["error"] = job.error
        table.append(row)
    return table


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
    for job in jobs:
        groups.setdefault(tuple(job.overrides.get(k, "") for k in others), []).append(job)
    scored = []
    for values, members in groups.items():
        done = [j for j in members if j.status in ("completed", "stopped")]
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
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    columns = [c for c in table[0] if c != "error" or any(r["error"] for r in table)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(short(r[c]).replace("|", "\\|") for c in columns) + " |" for r in table]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


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
        categories = sorted(set(values))
        x = numbers if all(n is not None for n in numbers) else [categories.index(v) for v in values]
        for pruned in (False, True):  # a pruned trial's value is where it stopped: drawn hollow
            points = [(xi, ranking.value(j)) for xi, j in zip(x, scored) if (j.status == "pruned") == pruned]
            if points:
                ax.scatter(*zip(*points), facecolors="none" if pruned else None, edgecolors="C0",
                           label="pruned (where it stopped)" if pruned else "finished")
        if any(j.status == "pruned" for j in scored):
            ax.legend(fontsize=8)
        if x is numbers:
            if min(numbers) > 0 and max(numbers) / min(numbers) > 10:  # learning rates: a log axis
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(categories)), categories, rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{axis_name(ranking.name)} at the end ({'higher' if ranking.maximize else 'lower'} is better)")
        fig.tight_layout()
        fig.savefig(out / f"objective_vs_{key.replace('/', '_')}.png", dpi=100)
        plt.close(fig)
    metric = jobs[0].metric[0] if isinstance(jobs[0].metric, list) else jobs[0].metric  # several: the first
    tag = "metrics/fid" if any("metrics/fid" in j.curves for j in jobs) else metric
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


def stored_study(sweep: Path):
    """The Optuna study an Optuna sweep stored beside its jobs (`optuna.db`), or None."""
    db = sweep / "optuna.db"
    if not db.exists():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db}"
    results = sweep / "optimization_results.yaml"
    names = [lookup(read_yaml(results), "study_name")] if results.exists() else []
    names = [n for n in names if n] or optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


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
    plots = [("optuna_history.png", views.plot_optimization_history, complete >= 1 and len(study.directions) == 1),
             ("optuna_importance.png", views.plot_param_importances, complete >= 2 and len(study.directions) == 1),
             ("optuna_pareto_front.png", views.plot_pareto_front, complete >= 1 and len(study.directions) > 1)]
    with warnings.catch_warnings():
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
            plt.savefig(out / name, dpi=100)
            plt.close("all")
    return notes


def report(sweep: str) -> Path:
    folder = Path(sweep)
    jobs = find_jobs(folder)
    study = stored_study(folder)
    ways = [d.name.lower() for d in study.directions] if study is not None else directions(folder)
    ranking = Ranking.of(jobs, ways[0] == "maximize")
    jobs = ranked(jobs, ranking)
    keys = swept_keys(jobs)
    out = folder / "report"
    out.mkdir(exist_ok=True)
    front = pareto_front(jobs, ways) if len(ways) > 1 else None
    write_tables(rows(jobs, keys, front), out)
    notes = [ranking.describe(), *(f"Left out {line}." for line in write_plots(jobs, keys, out, ranking))]
    if front is not None:
        notes.append(f"Several objectives ({', '.join(ways)}): ★ marks the {len(front)} jobs of the Pareto front.")
    seeds = seed_rows(jobs, keys, ranking)
    if seeds:
        write_tables(seeds, out, "seeds")
        notes.append("seeds.md: the jobs that differ only in seed, as mean ± std (n) over the seeds that finished, "
                     "ranked on the mean.")
    notes += optuna_plots(study, out)
    grids = sorted((jobs[0].folder / "images").glob("*.png"), key=lambda p: int(p.stem))
    if grids and ranking.value(jobs[0]) is not None:
        shutil.copyfile(grids[-1], out / "best_samples.png")
    else:
        notes.append("Left out best_samples.png: no job ranks first.")
    (out / "notes.txt").write_text("\n".join(notes) + "\n")
    return out


@dataclass
class Args:
    sweep: str = "???"  # the sweep's folder (outputs/multirun/<date>/<time>, outputs/optuna/<study>)


def main() -> None:
    out = run(lambda args: report(args.sweep), Args, __doc__)
    print((out / "jobs.md").read_text())
    if (out / "seeds.md").exists():
        print((out / "seeds.md").read_text())
    print((out / "notes.txt").read_text(), end="")
    print(f"Report written to {out}/")


if __name__ == "__main__":
    main()
