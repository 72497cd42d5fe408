"""threads=auto shares the machine's cores among the runs alive on it (gan/run/threads.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from gan.run import threads
from tests.helpers import quick, run_cli


def test_live_runs_count_living_processes_and_forget_dead_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "REGISTRY", tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / dead.stdout.strip()).touch()
    assert threads.live_runs() == 0 and not any(tmp_path.iterdir())  # the dead run's entry is gone
    with threads.registered():
        assert threads.live_runs() == 1
        assert threads.auto_threads() == threads.cores()
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (tmp_path / str(other.pid)).touch()
            assert threads.live_runs() == 2
            assert threads.auto_threads() == max(1, threads.cores() // 2)
        finally:
            other.kill()
            other.wait()
    assert threads.live_runs() == 0


def test_a_run_started_beside_another_takes_its_share_of_the_cores(mnist_root, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    entry = threads.REGISTRY / str(other.pid)
    try:
        threads.REGISTRY.mkdir(parents=True, exist_ok=True)
        entry.touch()  # as a second run registers itself
        done = run_cli(*quick(), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        [status] = tmp_path.glob("outputs/*/*/status.json")
        assert json.loads(status.read_text())["threads"] == max(1, threads.cores() // 2)
    finally:
        other.kill()
        other.wait()
        entry.unlink(missing_ok=True)
