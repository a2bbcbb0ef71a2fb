"""`launch slurm` on a CPU submit host: `hardware: auto` describes the cluster's compute nodes, not this host.

A GPU cluster profile resolves it (its `hardware`, or a node type in its constraint) or the command is refused
naming `hardware=` and `launch.cluster=`. Placeholder accounts are refused at submission, and the Python a job
runs agrees with the profile's container and venv activation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from triglot.testing import REPO_ROOT
from triglot.testing import test_env as run_env

QUICKSTART = "configs/experiments/quickstart.yaml"  # hardware: auto


@pytest.fixture(autouse=True)
def cpu_host() -> None:
    from triglot.hardware import detect_profile_name

    if detect_profile_name() != "cpu":
        pytest.skip("these checks are about a submit host without accelerators")


def slurm(tmp_path: Path, profile: dict, *extra: str) -> subprocess.CompletedProcess:
    import yaml

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"description": "test site", **profile}), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "triglot", "launch", "slurm", "train", QUICKSTART,
                           f"run.dir={tmp_path / 'run'}", f"launch.cluster={path}", *extra],
                          cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=120)


GPU_SITE = {"account": "proj42", "partition": "gpu", "gpu_request": "gres"}


def test_gpu_profile_resolves_auto_from_its_node_type(tmp_path: Path) -> None:
    proc = slurm(tmp_path, {**GPU_SITE, "constraint": "h100"}, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert "#SBATCH --gres=gpu:8" in script and "RANKS_PER_NODE=8" in script
    assert "Communication settings for NCCL (nvidia-h100)" in script and "OMP_NUM_THREADS" not in script
    assert not (tmp_path / "run").exists()


def test_gpu_profile_names_its_hardware_and_gpus_per_node_win(tmp_path: Path) -> None:
    proc = slurm(tmp_path, {**GPU_SITE, "hardware": "nvidia-a100"}, "--gpus-per-node", "4", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --gres=gpu:4" in proc.stdout and "(nvidia-a100)" in proc.stdout


def test_gpu_profile_without_a_node_type_is_refused(tmp_path: Path) -> None:
    for extra in ((), ("--gpus-per-node", "4")):
        proc = slurm(tmp_path, GPU_SITE, *extra, "--dry-run")
        assert proc.returncode == 2, proc.stdout[-2000:]
        [line] = proc.stderr.strip().splitlines()
        assert "hardware: auto cannot be resolved" in line and "hardware=<profile>" in line, line
        assert "launch.cluster=site" in line, line
    # Naming the hardware on the command line is enough.
    named = slurm(tmp_path, GPU_SITE, "hardware=nvidia-h100", "--dry-run")
    assert named.returncode == 0 and "#SBATCH --gres=gpu:8" in named.stdout, named.stderr


def test_cpu_profile_resolves_to_cpu_ranks(tmp_path: Path) -> None:
    proc = slurm(tmp_path, {"partition": "debug", "gpu_request": "none"}, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "--gres" not in proc.stdout and "Communication settings for gloo (cpu)" in proc.stdout


def test_placeholder_account_is_refused(tmp_path: Path) -> None:
    site = {**GPU_SITE, "constraint": "h100", "account": "my-account"}
    proc = slurm(tmp_path, site)
    assert proc.returncode == 2 and "account is 'my-account', a placeholder" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()
    dry = slurm(tmp_path, site, "--dry-run")
    assert dry.returncode == 0 and "# warning: cluster profile 'site': account is 'my-account'" in dry.stdout


def test_container_python_and_venv_agree(tmp_path: Path) -> None:
    box = {**GPU_SITE, "constraint": "h100", "container": {"image": "nvcr.io#nvidia/pytorch:25.01-py3"}}
    assert "PYTHON=python3\n" in slurm(tmp_path, box, "--dry-run").stdout
    venv = ['source "$HOME/triglot/.venv/bin/activate"']
    refused = slurm(tmp_path, {**box, "setup": venv}, "--dry-run")
    assert refused.returncode == 2 and "whose Python does not see it" in refused.stderr, refused.stderr
    assert "PYTHON=/opt/venv/bin/python\n" in slurm(tmp_path, {**box, "setup": venv, "python": "/opt/venv/bin/python"},
                                                    "--dry-run").stdout
    plain = {**GPU_SITE, "constraint": "h100", "setup": venv}
    assert "PYTHON=python\n" in slurm(tmp_path, plain, "--dry-run").stdout
