"""Shared pieces for the training tests: a synthetic packed folder and a small experiment file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triglot.testing import write_synthetic_pack


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_pack(tmp_path_factory.mktemp("packed"), vocab_size=128, docs=240, seed=7)


def write_experiment(path: Path, run_dir: Path, data_dir: Path, **train) -> Path:
    """A tiny-model experiment on `data_dir`; keyword arguments override train.* keys."""
    config = {
        "defaults": {"model": "tiny", "hardware": "cpu"},
        "run": {"name": "t", "dir": str(run_dir), "seed": 11},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_kv_heads": 2},
        "tracking": {"mode": "disabled"},
        "train": {"steps": 4, "seq_len": 32, "global_batch_size": 8, "micro_batch_size": 4, "lr": 0.003,
                  "warmup_steps": 1, "data_dir": str(data_dir), "checkpoint": {"every": 2}, **train},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def read_metrics(run_dir: Path) -> dict[int, dict]:
    """Last training record per step (a resumed run logs the redone steps again)."""
    import json

    out: dict[int, dict] = {}
    for line in (run_dir / "checkpoints" / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec
    return out
