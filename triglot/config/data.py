"""Data section: sources for the clean stage and its options (filters, PII, dedup, workers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SourceSpec:
    name: str = "???"
    # Path globs, relative to the working directory unless absolute.
    paths: list[str] = field(default_factory=list)
    # jsonl, json, csv, tsv, text, parquet, wikiextractor, html, warc, wet
    format: str = "jsonl"
    text_field: str = "text"
    language: Optional[str] = None
    license: str = "unknown"


@dataclass
class DataSection:
    name: str = "data"
    sources: list[SourceSpec] = field(default_factory=list)
    # Output folder of the clean stage; empty means <run.dir>/data/clean.
    output_dir: str = ""
    workers: int = 1
