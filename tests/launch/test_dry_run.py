"""A dry run changes nothing, and a submitted job reads a config file of its own that later commands leave alone.

`launch local --dry-run` and `launch slurm --dry-run` leave the run folder byte for byte as it was, while a job
submitted before them (held in the local Slurm queue) still reads the config it was submitted with.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from triglot.config import config_hash, load_config
from triglot.testing import REPO_ROOT
from triglot.testing import test_env as run_env

QUICKSTART = "configs/experiments/quickstart.yaml"


def triglot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], cwd=REPO_ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) below `folder`, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_launch_local_dry_run_writes_nothing(tmp_path: Path, packed_dir: Path, helpers) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("# the config a running job was started with\n")
    before = snapshot(run)
    proc = triglot("launch", "local", "train", QUICKSTART, *helpers.tiny_overrides(run, packed_dir), "train.lr=0.5",
                   "--nproc", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(run) == before
    digest = config_hash(load_config(QUICKSTART, [*helpers.tiny_overrides(run, packed_dir), "train.lr=0.5"]))
    assert f"configs/{digest}.yaml" in proc.stdout and "nothing written" in proc.stdout


def test_dry_run_leaves_a_queued_jobs_run_folder_unchanged(slurm_cluster: str, tmp_path: Path, packed_dir: Path,
                                                           helpers) -> None:
    run = tmp_path / "run"
    overrides = [*helpers.tiny_overrides(run, packed_dir), "launch.sbatch_args=[--hold]", "launch.requeue=false"]
    proc = triglot("launch", "slurm", "train", QUICKSTART, *overrides, "train.lr=0.001")
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    try:
        script = next((run / "jobs").glob("*.sbatch")).read_text()
        frozen = run / "configs" / f"{config_hash(load_config(QUICKSTART, [*overrides, 'train.lr=0.001']))}.yaml"
        assert f"CONFIG={frozen}" in script
        before = snapshot(run)
        for kind in (["slurm", "train"], ["slurm", "all"], ["local", "train"]):
            dry = triglot("launch", *kind, QUICKSTART, *overrides, "train.lr=0.5", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "nothing written" in dry.stdout
        assert snapshot(run) == before
        assert yaml.safe_load(frozen.read_text())["train"]["lr"] == 0.001
        # A second real submission with other settings gets a file of its own; the queued job's stays.
        again = triglot("launch", "slurm", "train", QUICKSTART, *overrides, "train.lr=0.5")
        assert again.returncode == 0, again.stderr
        subprocess.run(["scancel", again.stdout.strip().splitlines()[-1]], check=False)
        assert yaml.safe_load(frozen.read_text())["train"]["lr"] == 0.001
        assert len(list((run / "configs").glob("*.yaml"))) == 2
    finally:
        subprocess.run(["scancel", job_id], check=False)
