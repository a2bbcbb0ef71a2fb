"""Fixtures for the launch tests: the local Slurm cluster (started once per session) and small experiments."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from triglot.testing import write_synthetic_pack

REPO_ROOT = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO_ROOT / "launch" / "slurm_local.sh"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")


def _have(binary: str) -> bool:
    return shutil.which(binary) is not None or Path("/usr/sbin", binary).exists()


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Start (or reuse) the one-node cluster of launch/slurm_local.sh; returns its SLURM_CONF."""
    missing = [b for b in SLURM_BINARIES if not _have(b)]
    if missing:
        pytest.skip(f"Slurm not installed (missing {', '.join(missing)}); "
                    "apt-get install -y slurmctld slurmd slurm-client munge")
    proc = subprocess.run([str(SLURM_SCRIPT), "start"], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"launch/slurm_local.sh start failed:\n{proc.stdout}\n{proc.stderr}")
    conf = str(Path(os.environ.get("TRIGLOT_SLURM_DIR", "/tmp/triglot-slurm")) / "slurm.conf")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_pack(tmp_path_factory.mktemp("packed"), vocab_size=128, docs=240, seed=7)


class Helpers:
    """Small helpers the launch tests share (a fixture, so test modules need not import each other)."""

    @staticmethod
    def tiny_overrides(run_dir: Path, data_dir: Path, steps: int = 4, every: int = 2) -> list[str]:
        return tiny_overrides(run_dir, data_dir, steps, every)

    write_yaml = staticmethod(lambda path, body: write_yaml(path, body))
    wait_for_jobs = staticmethod(lambda job_ids, timeout=600: wait_for_jobs(job_ids, timeout))


@pytest.fixture(scope="session")
def helpers() -> type[Helpers]:
    return Helpers


def tiny_overrides(run_dir: Path, data_dir: Path, steps: int = 4, every: int = 2) -> list[str]:
    """Overrides that make the quickstart experiment train in seconds on the synthetic pack."""
    return [f"run.dir={run_dir}", f"train.data_dir={data_dir}", f"train.steps={steps}", "train.seq_len=32",
            "train.global_batch_size=8", "train.micro_batch_size=4", f"train.checkpoint.every={every}",
            "train.checkpoint.export_hf=false", "hardware=cpu", "tracking.mode=offline"]


def write_yaml(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def wait_for_jobs(job_ids: list[str], timeout: float = 600) -> None:
    """Poll squeue until none of the jobs (or their array tasks) is pending, running or requeued."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i %T"],
                             capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(2)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout}s:\n{out}")
