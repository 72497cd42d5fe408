"""Fault injection: SIGTERM and Ctrl-C sent to a real `python train.py` mid-run stop it cleanly,
and a run resumed from its folder continues exactly as the uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from gan.run.checkpoints.files import resolve_checkpoint
from gan.training.fit import fit
from tests.helpers import DATA_ROOT, ROOT, generator_weights, make_cfg, quick


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_stops_cleanly_and_a_resume_matches_the_uninterrupted_run(sig, code, mnist_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "GAN_DATA_DIR": DATA_ROOT}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *quick("trainer.max_steps=100000", "sample_every=5"),
                             f"hydra.run.dir={run}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 180
    while not (run / "images" / "000010.png").exists():  # training is under way
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(sig)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == code, output[-3000:]
    assert f"{sig.name} received: finishing this step" in output and "Traceback" not in output
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == sig.name
    stopped_at = status["metrics"]["global_step"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stopped_at >= 10
    assert not (run / "checkpoints" / "on_exception.ckpt").exists()  # stopped between iterations, not by a crash

    total = stopped_at + 7
    fit(make_cfg(*quick(f"trainer.max_steps={total}", f"ckpt_path={run}"), run_dir=tmp_path / "resumed"))
    fit(make_cfg(*quick(f"trainer.max_steps={total}"), run_dir=tmp_path / "straight"))
    a = generator_weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    b = generator_weights(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_folder_resumes_from_its_newest_clean_checkpoint(mnist_root, tmp_path):
    fit(make_cfg(*quick(), run_dir=tmp_path / "run"))
    folder = tmp_path / "run" / "checkpoints"
    shutil.copy(folder / "step_000006.ckpt", folder / "last.ckpt")  # last.ckpt older than a step checkpoint
    assert resolve_checkpoint(str(tmp_path / "run")) == str(folder / "step_000012.ckpt")
    (folder / "step_000012.ckpt").unlink()
    assert resolve_checkpoint(str(tmp_path / "run")) == str(folder / "last.ckpt")
