"""Stopping `triglot launch local`: Ctrl-C or SIGTERM to the launcher reaches torchrun and every rank; training
saves a checkpoint, the launcher's stop message ends the output, and a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from triglot.testing import REPO_ROOT
from triglot.testing import test_env as testing_env

pytestmark = pytest.mark.distributed


def experiment(tmp_path: Path, packed_dir: Path) -> tuple[Path, Path]:
    """Two ranks, far more steps than the test waits for, and no checkpoint but the one a stop saves."""
    run = tmp_path / "run"
    body = {
        "defaults": {"model": "tiny", "hardware": "cpu"},
        "run": {"name": "stop", "dir": str(run), "stages": ["train"], "nproc_per_node": 2},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_kv_heads": 2},
        "tracking": {"mode": "disabled"},
        "train": {"steps": 100000, "seq_len": 32, "global_batch_size": 8, "micro_batch_size": 2, "warmup_steps": 1,
                  "val_every": 0, "data_dir": str(packed_dir),
                  "checkpoint": {"every": 1000000, "export_hf": False}},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path, run


LAUNCH_LOCAL = ("launch", "local", "train", "{exp}", "--nproc", "2")


def start_launcher(exp: Path, log: Path, command: tuple[str, ...] = LAUNCH_LOCAL) -> subprocess.Popen:
    # A session of its own, as a shell gives a foreground job; the test signals the launcher alone.
    args = [arg.format(exp=exp) for arg in command]
    return subprocess.Popen([sys.executable, "-m", "triglot", *args],
                            cwd=REPO_ROOT, env=testing_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    metrics = run / "checkpoints" / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"launcher ended (exit {proc.returncode}) before step {step}"
        if metrics.is_file() and any(f'"step": {step},' in line for line in metrics.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def assert_all_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=30)
    kill_all(alive)
    assert not alive, f"left running after the launcher ended: {[p.pid for p in alive]}"


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def stop_and_check(tmp_path: Path, packed_dir: Path, sig: int, label: str,
                   command: tuple[str, ...] = LAUNCH_LOCAL) -> None:
    exp, run = experiment(tmp_path, packed_dir)
    log = tmp_path / "launch.log"
    proc = start_launcher(exp, log, command)
    below: list[psutil.Process] = []
    try:
        wait_for_step(run, 3, proc)
        below = tree(proc.pid)
        assert len(below) >= 3, below  # torchrun and two ranks
        proc.send_signal(sig)
        proc.wait(timeout=300)
        out = log.read_text()
        assert proc.returncode == 75, out[-4000:]
        assert_all_gone(below)
    finally:
        kill_all([*below, psutil.Process(proc.pid)] if proc.poll() is None else below)
    marker = json.loads((run / "checkpoints" / "PREEMPTED").read_text())
    folder = Path(marker["checkpoint"])
    assert (folder / "COMPLETE").is_file(), out[-4000:]
    assert marker["step"] >= 3
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1] == (f"triglot: stopped by {label} after step {marker['step']}; every rank saved checkpoint "
                         f"{folder}; run the same command again to resume from it"), out[-4000:]
    assert "SignalException" not in out and "Traceback" not in out, out[-4000:]


def test_ctrl_c_to_launch_local_leaves_a_checkpoint(tmp_path: Path, packed_dir: Path) -> None:
    stop_and_check(tmp_path, packed_dir, signal.SIGINT, "Ctrl-C")


def test_sigterm_to_launch_local_reaches_torchrun_and_ranks(tmp_path: Path, packed_dir: Path) -> None:
    stop_and_check(tmp_path, packed_dir, signal.SIGTERM, "SIGTERM")


def test_ctrl_c_to_triglot_run_leaves_a_checkpoint(tmp_path: Path, packed_dir: Path) -> None:
    stop_and_check(tmp_path, packed_dir, signal.SIGINT, "Ctrl-C", command=("run", "{exp}"))


def test_second_ctrl_c_aborts_at_once(tmp_path: Path, packed_dir: Path) -> None:
    exp, run = experiment(tmp_path, packed_dir)
    log = tmp_path / "launch.log"
    proc = start_launcher(exp, log)
    below: list[psutil.Process] = []
    try:
        wait_for_step(run, 2, proc)
        below = tree(proc.pid)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert_all_gone(below)
    finally:
        kill_all([*below, psutil.Process(proc.pid)] if proc.poll() is None else below)
    out = log.read_text()
    assert proc.returncode == 130, out[-4000:]
    assert [line for line in out.splitlines() if line.strip()][-1].startswith("triglot: aborted by a second Ctrl-C")
