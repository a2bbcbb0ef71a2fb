"""Shared by the clean-stage tests: build a config around given sources and read the stage's output."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from triglot.config import compose


def clean_config(run_dir: Path, sources: list[dict], overrides: list[str] = (), **data: Any) -> Any:
    return compose({"run": {"dir": str(run_dir)}, "data": {"sources": sources, **data}}, list(overrides))


def read_output(run_dir: Path) -> tuple[list[dict], dict]:
    """Rows of every part-*.parquet under <run>/data/clean and its report.json."""
    out = Path(run_dir) / "data" / "clean"
    rows = []
    for part in sorted(out.glob("part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows, json.loads((out / "report.json").read_text(encoding="utf-8"))


def write_review_slice(shared_data: Path, out: Path, start: int, stop: int) -> Path:
    """Rows start..stop of the shared shopping reviews (which repeat many reviews) as a CSV of their own."""
    src = shared_data / "corpora/zh_hans/zh_hans_reviews_sophonplus/online_shopping_10_cats.csv"
    with open(src, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.DictReader(fh))[start:stop]
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["cat", "label", "review"])
        writer.writeheader()
        writer.writerows(records)
    return out
