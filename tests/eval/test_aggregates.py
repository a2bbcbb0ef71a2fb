"""Micro (by question) and macro (by subject) accuracies, labelled, per suite and per category."""

from __future__ import annotations

from pathlib import Path

import pytest
from triglot.eval.results import aggregate, summary_markdown
from triglot.eval.suites import open_suite


def _records(subject: str, correct: int, total: int) -> list[dict]:
    return [{"suite": "mmlu", "subject": subject, "split": "test", "prediction": "A", "gold": "A" if i < correct else "B",
             "letters": ["A", "B", "C", "D"], "correct": i < correct} for i in range(total)]


def test_micro_and_macro_per_suite_and_category(benchmarks: Path) -> None:
    records = _records("abstract_algebra", 1, 2) + _records("college_physics", 4, 4) + _records("anatomy", 6, 12)
    scores = aggregate(records, {"mmlu": open_suite("mmlu", benchmarks)})["mmlu"]
    overall = scores["overall"]
    assert overall["accuracy_micro"] == pytest.approx(11 / 18) == overall["accuracy_question_weighted"]
    assert overall["accuracy_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3) == overall["accuracy_subject_mean"]
    stem = scores["categories"]["STEM"]
    assert stem["subjects"] == 2 and stem["accuracy_micro"] == pytest.approx(5 / 6)
    assert stem["accuracy_macro"] == pytest.approx((0.5 + 1) / 2)
    other = next(v for k, v in scores["categories"].items() if k.startswith("other"))
    assert other["accuracy_micro"] == other["accuracy_macro"] == 0.5
    res = {"checkpoint": {"path": "m"}, "settings": {"num_fewshot": 0, "mode": "letter"},
           "timing": {"questions": 18, "seconds": 1.0, "world_size": 1}, "scores": {"mmlu": scores}}
    table = summary_markdown(res)
    assert "accuracy micro (by question) | accuracy macro (by subject)" in table
    assert "| mmlu | test | overall | 3 | 18 ⚠ | 61.11 | 66.67 |" in table
    assert "| mmlu | test | STEM | 2 | 6 ⚠ | 83.33 | 75.00 |" in table
