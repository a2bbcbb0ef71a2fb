"""The benchmark report: sections are replaced in place and every recorded goal reaches the summary."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import goal, record_goals, update_section


def test_sections_are_replaced_not_repeated(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    update_section("a", "first", doc)
    update_section("b", "other", doc)
    update_section("a", "second", doc)
    text = doc.read_text()
    assert text.count("<!-- bench:a -->") == 1 and "second" in text and "first" not in text
    assert text.index("second") < text.index("other"), "a section keeps its place"


def test_summary_lists_every_goal_with_its_status(tmp_path: Path) -> None:
    doc, results = tmp_path / "BENCHMARKS.md", tmp_path / "benchmarks.json"
    record_goals("bench_x", [goal("speed-up", 1.86, 1.7, unit="x"), goal("memory", 0.7, 0.6, at_most=True)],
                 results, doc)
    record_goals("bench_y", [goal("ratio", 0.95, 0.8)], results, doc)
    # A rerun replaces its rows; a goal names its baseline.
    record_goals("bench_x", [goal("speed-up", 1.5, 1.7, unit="x", baseline="plain DDP (torch 2.13)")], results, doc)
    summary = doc.read_text()
    assert "| `bench/bench_x.py` | speed-up | plain DDP (torch 2.13) | 1.5x | >= 1.7x | **NOT met** |" in summary
    assert "| `bench/bench_y.py` | ratio |  | 0.95 | >= 0.8 | met |" in summary
    assert "memory" not in summary
    assert json.loads(results.read_text())["bench_y"]["goals"][0]["met"] is True
