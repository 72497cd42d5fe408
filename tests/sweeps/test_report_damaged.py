"""The sweep report on a damaged sweep folder: a truncated status.json, a job without .hydra/, an
unreadable optuna.db or config or events file is one line naming the file and what is wrong with
it (in the jobs table and in notes.txt), never a traceback; and every file the report writes
replaces the old one whole."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from gan.errors import UserError
from gan.report import report
from gan.run.status import write_status
from tests.sweeps.test_sweeps import fake_job, ranked_value, shows_grid, write_seed_grid


def jobs_table(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "jobs.csv", encoding="utf-8") as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def fid_sweep(sweep: Path) -> None:
    """Three finished jobs ranked by their last FID: job 1 first (1974), then 0 (2038), then 2 (2100)."""
    fake_job(sweep, "0", ["model.latent_dim=32"], [2100.0, 2038.0])
    fake_job(sweep, "1", ["model.latent_dim=64"], [2200.0, 1974.0])
    fake_job(sweep, "2", ["model.latent_dim=128"], [2300.0, 2100.0])


def test_a_truncated_status_json_is_one_damaged_job_named_in_the_table_the_notes_and_the_console(tmp_path):
    fid_sweep(tmp_path)
    status = tmp_path / "0" / "status.json"
    status.write_bytes(status.read_bytes()[:25])
    out = report(str(tmp_path))
    table = jobs_table(out)
    assert set(table) == {"0", "1", "2"} and table["0"]["status"] == "damaged"
    assert table["0"]["defects"].startswith("status.json: unreadable (JSONDecodeError")
    assert table["1"]["defects"] == table["2"]["defects"] == ""
    assert f"{status}: unreadable (JSONDecodeError" in (out / "notes.txt").read_text()
    assert "defects" in (out / "jobs.md").read_text().splitlines()[0]
    console = subprocess.run([sys.executable, "-m", "gan.report", f"sweep={tmp_path}"], capture_output=True, text=True)
    assert console.returncode == 0, console.stderr[-2000:]
    assert f"{status}: unreadable (JSONDecodeError" in console.stdout and "Traceback" not in console.stderr


def test_a_job_without_hydra_is_listed_with_unknown_overrides_and_still_ranks_first(tmp_path):
    fid_sweep(tmp_path)
    shutil.rmtree(tmp_path / "1" / ".hydra")  # the best job
    out = report(str(tmp_path))
    with open(out / "jobs.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["model.latent_dim"]) for r in rows] == [("1", "unknown"), ("0", "32"), ("2", "128")]
    assert rows[0]["status"] == "completed" and rows[0]["defects"] == "no .hydra/ (its overrides and config are unknown)"
    notes = (out / "notes.txt").read_text()
    assert f"{tmp_path / '1'}: no .hydra/ (its overrides and config are unknown)" in notes
    assert shows_grid(out / "best_samples.png", "1", 100)  # still the best job's grid
    assert (out / "objective_vs_model.latent_dim.png").exists()  # drawn from the jobs whose overrides are known


def test_a_job_with_only_events_ranks_by_the_sweeps_metric_after_the_finished_ones(tmp_path):
    write_seed_grid(tmp_path, {("32", "1"): 40.0, ("32", "2"): 44.0, ("64", "1"): 30.0})
    shutil.rmtree(tmp_path / "2" / ".hydra")
    (tmp_path / "2" / "status.json").unlink()  # the best FID, but nothing says how the job ended
    (tmp_path / "3" / "checkpoints").mkdir(parents=True)  # a job that left only a checkpoint folder
    (tmp_path / "notes").mkdir()  # not a job: nothing a job leaves
    (tmp_path / "notes" / "todo.txt").write_text("rerun seed 3")
    out = report(str(tmp_path))
    with open(out / "jobs.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"], ranked_value(r, "FID ↓")) for r in rows] == [
        ("0", "completed", "40"), ("1", "completed", "44"), ("2", "unknown", "30"), ("3", "unknown", "")]
    assert rows[2]["seed"] == "unknown" and "status.json: missing" in rows[2]["defects"]
    notes = (out / "notes.txt").read_text()
    assert f"{tmp_path / '2' / 'status.json'}: missing (what became of the job is unknown)" in notes
    assert f"{tmp_path / '3'}: no .hydra/" in notes and "rank after the finished ones" in notes


def optuna_db(sweep: Path) -> Path:
    """A stored study of three complete trials, as an Optuna sweep leaves it beside its jobs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = sweep / "optuna.db"
    study = optuna.create_study(study_name="grid", storage=f"sqlite:///{db}", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return db


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_an_unreadable_optuna_db_is_one_note_and_the_report_is_made_from_the_jobs(tmp_path, damage):
    fid_sweep(tmp_path)
    db = optuna_db(tmp_path)
    data = db.read_bytes()
    db.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a database " * 500, "empty": b""}[damage])
    out = report(str(tmp_path))
    assert len(jobs_table(out)) == 3
    notes = (out / "notes.txt").read_text().splitlines()
    [line] = [n for n in notes if n.startswith(str(db))]
    expected = "(an empty file)" if damage == "empty" else "(DatabaseError: (sqlite3.DatabaseError) "
    assert line.startswith(f"{db}: could not be read {expected}") and line.endswith("Optuna's views of the study are left out")
    assert not list(out.glob("optuna_*.png")) and not any("Optuna study" in n for n in notes)
    assert damage != "empty" or db.stat().st_size == 0  # not given Optuna's tables by the report


def events_file(job: Path) -> Path:
    [path] = job.glob("*tfevents*")
    return path


DAMAGES = {  # what is done to job 0, and the start of its one defect, relative to its folder
    "config.yaml garbage": (lambda job: (job / ".hydra" / "config.yaml").write_text("optimized_metric: [unclosed\n"),
                            ".hydra/config.yaml: not a readable YAML file (ParserError"),
    "overrides.yaml garbage": (lambda job: (job / ".hydra" / "overrides.yaml").write_bytes(b"- a: [\x00\xff"),
                               ".hydra/overrides.yaml: not a readable YAML file"),
    "overrides.yaml not a list": (lambda job: (job / ".hydra" / "overrides.yaml").write_text("model: big\n"),
                                  ".hydra/overrides.yaml: not a list of overrides (its overrides are unknown)"),
    "overrides.yaml empty": (lambda job: (job / ".hydra" / "overrides.yaml").write_text(""),
                             ".hydra/overrides.yaml: empty (its overrides are unknown)"),
    "status.json not a status": (lambda job: (job / "status.json").write_text("[1, 2]"),
                                 "status.json: not a run's status"),
    "objective not a number": (lambda job: write_status(job, status="completed", objective="low"),
                               "status.json: its objective is not a number (low)"),
    "events garbage": (lambda job: events_file(job).write_bytes(os.urandom(4000)), "events.out.tfevents"),
    "events truncated": (lambda job: events_file(job).write_bytes(events_file(job).read_bytes()[:-7]), "events.out.tfevents"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_any_other_unreadable_file_of_a_job_is_one_defect_line_for_that_job(tmp_path, damage):
    fid_sweep(tmp_path)
    spoil, expected = DAMAGES[damage]
    spoil(tmp_path / "0")
    out = report(str(tmp_path))
    table = jobs_table(out)
    assert set(table) == {"0", "1", "2"}
    assert table["0"]["defects"].startswith(expected) and "; " not in table["0"]["defects"]  # one line
    notes = (out / "notes.txt").read_text().splitlines()
    assert [n for n in notes if n.startswith(str(tmp_path / "0"))] == [f"{tmp_path / '0'}/{table['0']['defects']}"]
    assert table["1"]["rank"] == "1"  # the others ranked as before


def test_events_damage_is_told_apart(tmp_path):
    fid_sweep(tmp_path)
    garbage, truncated, running = (events_file(tmp_path / name) for name in ("0", "1", "2"))
    garbage.write_bytes(os.urandom(4000))
    truncated.write_bytes(truncated.read_bytes()[:-7])
    write_status(tmp_path / "2", status="running", started=0.0)
    running.write_bytes(running.read_bytes()[:-7])  # a record being written
    table = jobs_table(report(str(tmp_path)))
    assert table["0"]["defects"] == f"{garbage.name}: not TensorBoard events (its first record fails its checksum, " \
                                    "so nothing was read from it)"
    assert table["1"]["defects"].startswith(f"{truncated.name}: truncated after ") and table["1"]["final fid ↓"] == "2200"
    assert table["2"]["defects"] == "" and table["2"]["status"] == "running"


def test_a_folder_with_no_job_is_one_paragraph(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "jobs.csv").write_text("rank,job\n")
    with pytest.raises(UserError, match="no sweep jobs there") as error:
        report(str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="no sweep jobs there"):
        report(str(tmp_path / "missing"))


def test_every_file_the_report_writes_replaces_the_old_one_whole(tmp_path):
    """A file written in place would change every other name of it (a hard link, a reader's open
    file) and be half-written for a while; one renamed over it leaves the old one untouched."""
    fid_sweep(tmp_path)
    fake_job(tmp_path, "3", ["model.latent_dim=32", "seed=2"], [2050.0])  # seeds.md too
    optuna_db(tmp_path)
    out = report(str(tmp_path))
    written = sorted(p.name for p in out.iterdir())
    wanted = {"jobs.csv", "jobs.md", "notes.txt", "seeds.csv", "seeds.md", "curves.png", "best_samples.png", "optuna_history.png"}
    assert wanted <= set(written)
    old = tmp_path / "old"
    old.mkdir()
    for name in written:
        (old / name).write_bytes(b"old")
        (out / name).unlink()
        os.link(old / name, out / name)
    report(str(tmp_path))
    assert sorted(p.name for p in out.iterdir()) == written  # no temporary file left
    assert all((old / name).read_bytes() == b"old" != (out / name).read_bytes() for name in written)
