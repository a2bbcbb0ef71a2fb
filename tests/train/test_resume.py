"""Exact resume: after a signal stop, a kill -9 of one rank, or at another world size, the loss at every
step equals an uninterrupted run's, and every global sample is consumed exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from triglot.train.coordination import EXIT_PREEMPTED

from tests.train.conftest import read_metrics, write_experiment
from tests.train.resume_check import assert_resumed_from
from triglot.testing import run_torchrun, start_torchrun, worker_pids

pytestmark = pytest.mark.distributed

STEPS = 36
SETTINGS = {"steps": STEPS, "log_samples": True, "checkpoint": {"every": 3, "keep_last": 2, "export_hf": False}}


def _experiment(tmp_path: Path, name: str, packed_dir: Path) -> tuple[Path, Path]:
    run = tmp_path / name
    return write_experiment(tmp_path / f"{name}.yaml", run, packed_dir, **SETTINGS), run


def _wait_for_step(run: Path, step: int, proc, timeout: float = 240) -> None:
    metrics = run / "checkpoints" / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before step {step}")
        if metrics.is_file() and any(f'"step": {step},' in line for line in metrics.read_text().splitlines()):
            return
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached")


def _samples(run: Path) -> dict[int, list[int]]:
    per_step: dict[int, list[int]] = {}
    for path in sorted((run / "checkpoints" / "samples").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            per_step.setdefault(rec["step"], []).extend(rec["indices"])
    return {s: sorted(v) for s, v in per_step.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, packed_dir):
    tmp = tmp_path_factory.mktemp("reference")
    exp, run = _experiment(tmp, "straight", packed_dir)
    run_torchrun(2, ["train", str(exp)], timeout=400)
    return read_metrics(run), _samples(run)


def _assert_same_run(run: Path, reference, exact: bool = True) -> None:
    ref_metrics, ref_samples = reference
    metrics, samples = read_metrics(run), _samples(run)
    assert sorted(metrics) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        if exact:
            assert metrics[step]["loss"] == ref_metrics[step]["loss"], step
        else:
            assert metrics[step]["loss"] == pytest.approx(ref_metrics[step]["loss"], rel=1e-5), step
    assert samples == ref_samples
    consumed = [i for step in range(1, STEPS + 1) for i in samples[step]]
    assert sorted(consumed) == list(range(STEPS * 8))  # every sample exactly once


def test_signal_stop_then_resume_is_exact(tmp_path, packed_dir, reference):
    exp, run = _experiment(tmp_path, "signal", packed_dir)
    proc = start_torchrun(2, ["train", str(exp)], log_path=tmp_path / "signal.log")
    _wait_for_step(run, 5, proc)
    os.kill(worker_pids(proc.pid)[1], signal.SIGUSR1)  # one rank asked; all must stop together
    proc.wait(timeout=240)
    log = (tmp_path / "signal.log").read_text()
    assert proc.returncode != 0 and f"exitcode  : {EXIT_PREEMPTED}" in log.replace("exitcode: ", "exitcode  : ")
    stopped = max(read_metrics(run))
    assert stopped < STEPS and (run / "checkpoints" / f"step-{stopped:08d}" / "COMPLETE").is_file()
    assert json.loads((run / "checkpoints" / "PREEMPTED").read_text())["step"] == stopped
    run_torchrun(2, ["train", str(exp)], timeout=400)
    assert_resumed_from(run / "checkpoints" / "metrics.jsonl", stopped, STEPS)
    _assert_same_run(run, reference)
    assert not (run / "checkpoints" / "PREEMPTED").exists()
    # keep_last=2: only the two newest checkpoints remain.
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        f"step-{STEPS - 3:08d}", f"step-{STEPS:08d}"]


def test_kill_one_rank_then_resume_is_exact(tmp_path, packed_dir, reference):
    exp, run = _experiment(tmp_path, "killed", packed_dir)
    proc = start_torchrun(2, ["train", str(exp)], log_path=tmp_path / "killed.log")
    _wait_for_step(run, 7, proc)
    os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
    # The surviving rank must not hang: torchrun tears the job down and exits non-zero.
    assert proc.wait(timeout=180) != 0
    assert max(read_metrics(run)) < STEPS
    saved = max(int(p.parent.name[5:]) for p in (run / "checkpoints").glob("step-*/COMPLETE"))
    assert saved >= 6
    run_torchrun(2, ["train", str(exp)], timeout=400)
    assert_resumed_from(run / "checkpoints" / "metrics.jsonl", saved, STEPS)
    _assert_same_run(run, reference)


def test_resume_at_another_world_size_sees_the_same_samples(tmp_path, packed_dir, reference):
    exp, run = _experiment(tmp_path, "reshaped", packed_dir)
    proc = start_torchrun(2, ["train", str(exp)], log_path=tmp_path / "reshaped.log")
    _wait_for_step(run, 5, proc)
    os.kill(worker_pids(proc.pid)[0], signal.SIGTERM)
    proc.wait(timeout=240)
    stopped = max(read_metrics(run))
    # Same global batch (8) on one rank: micro-batch 4 with two accumulation steps.
    run_torchrun(1, ["train", str(exp), "train.micro_batch_size=4"], timeout=400)
    assert_resumed_from(run / "checkpoints" / "metrics.jsonl", stopped, STEPS)
    _assert_same_run(run, reference, exact=False)
