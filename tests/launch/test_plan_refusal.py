"""`launch slurm` prints the memory plan and refuses a training setting that cannot fit (exit 2, one line);
`--ignore-plan` submits it anyway (dry runs: nothing reaches the queue)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from triglot.testing import REPO_ROOT
from triglot.testing import test_env as run_env

QUICKSTART = "configs/experiments/quickstart.yaml"


def launch(run: Path, *args: str) -> subprocess.CompletedProcess:
    overrides = [f"run.dir={run}", "model=70b", "hardware=nvidia-h100", "launch.nodes=1", "launch.gpus_per_node=8",
                 "tracking.mode=offline"]
    return subprocess.run([sys.executable, "-m", "triglot", "launch", "slurm", "train", QUICKSTART, *overrides,
                           *args, "--dry-run"], cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True,
                          timeout=300)


def _message(stderr: str) -> list[str]:
    """stderr less the plan (printed as `# ` lines)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("#")]


def test_a_setting_that_cannot_fit_is_refused(tmp_path):
    proc = launch(tmp_path / "run", "train.zero_stage=0")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    message = _message(proc.stderr)
    assert len(message) == 1, message
    assert "train: ZeRO-0 needs" in message[0] and "GiB per device" in message[0]
    assert "--ignore-plan" in message[0] and "train.zero_stage=" in message[0]  # names the setting to change
    assert "# plan: model 70b" in proc.stderr and "# recommended: " in proc.stderr
    assert not (tmp_path / "run" / "jobs").exists()


def test_ignore_plan_overrides_the_refusal(tmp_path):
    proc = launch(tmp_path / "run", "train.zero_stage=0", "--ignore-plan")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# plan: model 70b" in proc.stderr and "does NOT fit" in proc.stderr
    assert "nothing written" in proc.stdout


def test_a_setting_that_fits_is_not_refused(tmp_path):
    proc = launch(tmp_path / "run", "train.zero_stage=3", "launch.nodes=8", "train.micro_batch_size=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# configured (*): ZeRO-3" in proc.stderr and ": fits" in proc.stderr


def test_a_heterogeneous_job_is_planned_for_its_components(tmp_path):
    """launch.nodes=1 x 8 cannot hold 70b under ZeRO-3 without offload; two components of 4 nodes x 8 GPUs can."""
    settings = ["train.zero_stage=3", "train.micro_batch_size=1", "launch.cluster=local"]
    alone = launch(tmp_path / "alone", *settings)
    assert alone.returncode == 2 and "ZeRO-3 needs" in alone.stderr, alone.stderr[-3000:]
    proc = launch(tmp_path / "het", *settings, "--component", "partition=debug,nodes=4,gpus=8",
                  "--component", "partition=second,nodes=4,gpus=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# configured (*): ZeRO-3" in proc.stderr and ": fits" in proc.stderr
    assert "8 node" in proc.stderr
