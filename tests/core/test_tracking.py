"""W&B in offline mode writes a real run with the logged metrics, never the API key, and keeps its id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triglot.config import compose
from triglot.tracking import NullTracker, resolve_mode, start_tracker

FAKE_KEY = "triglot-test-key-0123456789abcdef0123456789abcdef"


def _files_containing(root: Path, needle: str) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(path)
    return hits


TRACK_SCRIPT = """
import sys
from triglot.config import compose
from triglot.tracking import start_tracker
run_dir = sys.argv[1]
cfg = compose({"run": {"name": "t", "dir": run_dir}, "tracking": {"mode": "offline"}})
tracker = start_tracker(cfg, run_dir, job_type="train")
assert tracker.mode == "offline", tracker.mode
for step in range(3):
    tracker.log({"loss": 2.0 - step * 0.5, "lr": 1e-3}, step=step)
tracker.summary({"final_loss": 1.0})
tracker.finish()
"""


def test_offline_run_logs_metrics_and_never_the_key(tmp_path: Path) -> None:
    # A process of its own, as a training job is: W&B keeps per-process state.
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    env.pop("WANDB_MODE", None)
    proc = subprocess.run([sys.executable, "-c", TRACK_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines] == [2.0, 1.5, 1.0]
    run_files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert run_files, "W&B offline run file missing"
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    assert run_files[0].name == f"run-{run_id}.wandb"
    assert b"final_loss" in run_files[0].read_bytes()
    assert _files_containing(tmp_path, FAKE_KEY) == []
    assert FAKE_KEY not in proc.stdout + proc.stderr


def test_resumed_run_keeps_its_id(tmp_path: Path) -> None:
    cfg = compose({"run": {"name": "r", "dir": str(tmp_path)}, "tracking": {"mode": "offline"}})
    first = start_tracker(cfg, tmp_path, job_type="train")
    first.log({"loss": 1.0}, step=0)
    first.finish()
    # a requeued job starts a fresh process on the same run folder
    second = start_tracker(cfg, tmp_path, job_type="train")
    second.log({"loss": 0.5}, step=1)
    second.finish()
    assert first.run_id == second.run_id
    ids = {p.name for p in (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")}
    assert ids == {f"run-{first.run_id}.wandb"}
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]


def test_other_ranks_get_a_null_tracker(tmp_path: Path) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "tracking": {"mode": "offline"}})
    tracker = start_tracker(cfg, tmp_path, job_type="train", rank=1)
    assert isinstance(tracker, NullTracker)
    tracker.log({"loss": 1.0}, step=0)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_disabled_mode_still_writes_metrics(tmp_path: Path) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "tracking": {"mode": "disabled"}})
    with start_tracker(cfg, tmp_path, job_type="eval") as tracker:
        tracker.log({"acc": 0.5})
    assert not (tmp_path / "wandb").exists()
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["acc"] == 0.5


def test_auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert resolve_mode("auto") == "online"
