"""The check every resume test makes: the run's last start resumed from a given step and redid none before it."""

from __future__ import annotations

import json
from pathlib import Path


def assert_resumed_from(metrics_path: Path, step: int, last: int) -> None:
    """metrics.jsonl has a `resumed_from` record for `step`, and after it exactly steps step+1..last ran."""
    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line]
    starts = [i for i, rec in enumerate(records) if "resumed_from" in rec]
    assert starts, f"{metrics_path}: no resumed_from record, the run started again from step 0"
    start = records[starts[-1]]
    assert start["resumed_from"] == step, f"resumed from step {start['resumed_from']}, expected {step}"
    ran = [rec["step"] for rec in records[starts[-1] + 1:] if "loss" in rec]
    assert ran == list(range(step + 1, last + 1)), f"steps run after resuming from {step}: {ran}"
