"""The run's eval summary: models side by side, chance level, question counts, letter spread, plots;
malformed benchmark rows reported once per file."""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from triglot.eval import checkpoints
from triglot.eval.results import letter_spread
from triglot.eval.runner import evaluate_checkpoint
from triglot.eval.tasks import load_suites


def test_summary_puts_every_model_of_the_run_side_by_side(tmp_path: Path, benchmarks: Path, tiny_hf: Path,
                                                          eval_config) -> None:
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000010"
    shutil.copytree(tiny_hf, step / "hf")
    (step / "COMPLETE").write_text("{}", encoding="utf-8")
    cfg = eval_config(run, benchmarks, subjects=["mmlu/anatomy", "cmmlu/agronomy"], limit_per_subject=4)
    evaluate_checkpoint(cfg, checkpoints.Checkpoint(step / "hf", step, 10, step.name))
    evaluate_checkpoint(cfg, replace(checkpoints.resolve(tiny_hf), label="sft-export"))
    summary = (run / "eval" / "summary.md").read_text(encoding="utf-8")
    header = next(line for line in summary.splitlines() if line.startswith("| suite | split"))
    assert header.endswith("| step-00000010 | sft-export |") and "| chance |" in header
    mmlu = next(line for line in summary.splitlines() if line.startswith("| mmlu |"))
    assert "| 4 ⚠ | 25.00 |" in mmlu  # four questions: flagged; chance of four choices
    assert "fewer than 100 questions" in summary
    assert "Predicted letters" in summary and "| mmlu | sft-export |" in summary
    assert (run / "eval" / "scores.png").stat().st_size > 1000 and "![scores](scores.png)" in summary


def test_a_model_that_always_answers_a_shows_as_one() -> None:
    rows = [{"prediction": "A", "gold": gold, "letters": ["A", "B", "C", "D"]} for gold in "ABCD"]
    spread = letter_spread(rows)
    assert spread == {"chance": 0.25, "predicted": {"A": 4}, "gold": {"A": 1, "B": 1, "C": 1, "D": 1}}


def _suite_with_bad_rows(tmp_path: Path, benchmarks: Path) -> Path:
    root = tmp_path / "benchmarks"
    for split in ("dev", "test"):
        (root / "mmlu" / split).mkdir(parents=True)
        shutil.copy(benchmarks / "mmlu" / split / f"anatomy_{split}.csv", root / "mmlu" / split)
    path = root / "mmlu" / "test" / "anatomy_test.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    rows[1], rows[3] = rows[1][:3], rows[3][:2]  # two rows without all their choices
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


@pytest.mark.parametrize("rank, expected", [("0", 1), ("1", 0)])
def test_malformed_rows_are_reported_once_per_file_on_rank_zero(tmp_path: Path, benchmarks: Path, eval_config,
                                                                 caplog, monkeypatch, rank: str,
                                                                 expected: int) -> None:
    monkeypatch.setenv("RANK", rank)
    cfg = eval_config(tmp_path, _suite_with_bad_rows(tmp_path, benchmarks), suites=["mmlu"],
                      subjects=["mmlu/anatomy"])
    with caplog.at_level(logging.WARNING):
        (loaded,) = load_suites(cfg.eval)
    assert len(loaded.report.skipped) == 2
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == expected
    if expected:
        assert "anatomy_test.csv: 2 malformed row(s)" in warnings[0]


def test_list_suites_names_each_suite_with_language_and_size(benchmarks: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "triglot", "eval", "--list-suites",
                           f"eval.benchmarks_dir={benchmarks}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:] if line and line[0] != " "}
    assert rows["mmlu"][1] == "en/Latin" and rows["mmlu"][2] == "yes" and rows["mmlu"][3] == "57"
    assert int(rows["hkcanto-cultural"][4]) > 0 and rows["ceval"][1].startswith("zh-Hans")
