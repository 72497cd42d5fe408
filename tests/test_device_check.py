"""The one-call device check (gan/device_check.py), run as its CPU dry run: every step and every
section of the report on a real install into a fresh environment, and a failing step marked as
such, the steps after it still run, and the command exiting 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gan.device_check import Args, parse
from tests.helpers import ROOT


def device_check(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gan.device_check", "dry_run=true", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=1500)


def sections(report: str) -> dict[str, str]:
    """The report's `## Title (step): status, ...` lines, by step."""
    found = {}
    for line in report.splitlines():
        if line.startswith("## "):
            step = line[line.rindex("(") + 1:line.rindex(")")]
            found[step] = line.split("): ", 1)[1].split(",")[0]
    return found


@pytest.mark.slow
def test_the_dry_run_installs_runs_every_step_and_reports_each(mnist_root, mnist_classifier, tmp_path):
    done = device_check(f"out={tmp_path / 'check'}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "check" / "report.md").read_text()
    steps = [*Args.steps.split(","), "plain"]
    assert sections(report) == dict.fromkeys(steps, "ok")
    rows = {row["name"]: row for row in json.loads((tmp_path / "check" / "report.json").read_text())}
    assert rows["machine"]["figures"]["card"] == "no CUDA device" and rows["machine"]["figures"]["torch"]
    assert "skipped" in rows["tests"]["figures"]["summary"]  # the GPU tests, on a CPU
    for name in ("default", "bf16"):  # complete runs, evaluated
        assert rows[name]["figures"]["status"] == "completed" and rows[name]["figures"]["iterations"] == 40
        assert rows[name]["figures"]["fid"] > 0
    assert rows["ddp"]["figures"]["iterations"] == rows["plain"]["figures"]["iterations"] == 20
    assert "default / eager" in rows["bench"]["tail"] and "bf16-mixed default" in rows["precision"]["tail"]
    assert "| the default run | 40 iterations" in report  # the summary table, first
    env_python = tmp_path / "check" / "env" / "bin" / "python"
    where = subprocess.run([str(env_python), "-c", "import gan, sys; print(gan.__file__, sys.prefix)"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert where.stdout.split() == [str(ROOT / "gan" / "__init__.py"), str(tmp_path / "check" / "env")]  # installed there


def test_a_failing_step_is_marked_failed_the_next_ones_run_and_the_command_exits_1(tmp_path):
    (tmp_path / "empty").mkdir()
    done = device_check(f"out={tmp_path / 'check'}", f"data={tmp_path / 'empty'}", "steps=bf16,default", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED or not run: default, bf16" in done.stdout
    report = (tmp_path / "check" / "report.md").read_text()
    assert sections(report) == {"default": "FAILED", "bf16": "FAILED"}  # the second ran after the first failed
    assert "MNIST is not under" in report  # the end of the failed step's log, in the report


def test_bad_arguments_name_the_key_and_what_is_allowed():
    for argv, hint in ((["gpu=1"], "key among mode, dry_run"), (["dry_run=yes"], "true or false"),
                       (["steps=machine,train"], "steps among machine,install")):
        with pytest.raises(SystemExit) as err:
            parse(argv)
        assert hint in str(err.value) and argv[0] in str(err.value)
