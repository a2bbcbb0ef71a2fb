"""The quickstart experiment end to end, made smaller: every stage runs on real data and hands its
artifacts to the next, pretraining's loss falls, fine-tuning starts from the pretraining export and
eval scores both models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = "configs/experiments/quickstart.yaml"
SMALLER = [
    "data.max_docs_per_source=400",
    "tokenizer.sample_chars=300000",
    "tokenizer.vocab_size=3000",
    "train.steps=30",
    "train.val_every=0",
    "train.checkpoint.every=30",
    "sft.train.steps=4",
    "eval.suites=[mmlu,cmmlu,hkcanto-mmlu]",
    "eval.subjects=[high_school_biology,college_physics,anatomy]",
]


@pytest.mark.slow
@pytest.mark.distributed
def test_quickstart_pipeline(tmp_path: Path) -> None:
    run = tmp_path / "quickstart"
    cmd = [sys.executable, "-m", "triglot", "run", QUICKSTART, f"run.dir={run}", *SMALLER]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for folder in ("data/clean", "tokenizer", "data/packed", "checkpoints", "sft/checkpoints"):
        manifest = json.loads((run / folder / "manifest.json").read_text())
        assert manifest["outputs"], f"{folder} recorded no outputs"
    losses = [json.loads(line)["loss"] for line in (run / "checkpoints" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line and '"job": "train"' in line]
    assert len(losses) >= 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, "pretraining loss must fall"
    assert (run / "export" / "config.json").is_file() and (run / "sft" / "export" / "config.json").is_file()
    summaries = sorted(p.parent.name for p in (run / "eval").glob("*/summary.md"))
    assert "sft-export" in summaries and any(name.startswith("step-") for name in summaries)
    assert_closing_summary(proc.stdout, run, "ran")

    # A second run finds every stage current and rewrites no manifest; the distributed stages are skipped
    # before torchrun starts (else their ranks' loggers, triglot.train.* and triglot.eval.*, say so).
    manifests = {p: p.stat().st_mtime_ns for p in run.rglob("manifest.json")}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("manifest.json")} == manifests
    assert_closing_summary(again.stdout, run, "skipped (current)")
    out = again.stdout + again.stderr
    assert "triglot.train." not in out and "triglot.eval." not in out, out[-3000:]


def assert_closing_summary(stdout: str, run: Path, status: str) -> None:
    """The output ends with the summary: stages, losses, scores side by side, reports, the chat model, next."""
    summary = stdout[stdout.rindex("== triglot run"):]
    for stage in ("clean", "tokenizer", "pack", "train", "sft", "eval"):
        assert any(line.split()[:1] == [stage] and status in line for line in summary.splitlines()), summary
    assert "final loss" in summary and "sft-export" in summary and "chance" in summary, summary
    for report in (run / "data/clean/report.md", run / "tokenizer/fertility.md", run / "eval/summary.md"):
        assert f"  {report}\n" in summary, summary
    assert f"chat model: {run / 'sft' / 'export'}" in summary, summary
    assert f"triglot chat {run / 'sft' / 'export'}" in summary, summary
