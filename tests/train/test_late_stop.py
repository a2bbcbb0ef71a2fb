"""A stop signal that arrives after the last step: the run finishes, exports and exits 0, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import write_experiment
from triglot import testing
from triglot.testing import REPO_ROOT

HOOK = Path(__file__).parent / "late_stop"


@pytest.mark.distributed
def test_stop_after_the_last_step_finishes_the_run(tmp_path, packed_dir):
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "exp.yaml", run, packed_dir, steps=2)
    env = testing.test_env()
    env["PYTHONPATH"] = os.pathsep.join([str(HOOK), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, "-m", "triglot", "launch", "local", "train", str(exp), "--nproc", "2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert out.count("LATE STOP") == 2 and "LATE STOP rank 1: SIGUSR1" in out, out[-6000:]  # the signal came
    assert proc.returncode == 0, out[-6000:]
    assert "SIGUSR1 arrived after the last step; the run finished" in out, out[-6000:]
    assert "no checkpoint was saved" not in out and "Traceback" not in out, out[-6000:]
    assert (run / "export" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "manifest.json").is_file()
    assert not (run / "checkpoints" / "PREEMPTED").exists()
