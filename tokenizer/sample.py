"""Reading the clean stage's parquet output, and drawing a language-balanced training sample from it.

Sampling is two streaming passes: count characters per language, then keep each document with a
per-language probability decided by a hash of (seed, id), so the sample is deterministic and bounded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from triglot.errors import InputError

COLUMNS = ("id", "text", "language", "source")


def clean_files(folder: str | Path) -> list[Path]:
    """Parquet shards of a clean-stage folder: those its manifest lists, else every part-*.parquet."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"clean data folder {folder} not found: run `triglot data clean` first "
                         "or point tokenizer.input_dir / pack.input_dir at it")
    files: list[Path] = []
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            outputs = json.loads(manifest.read_text(encoding="utf-8")).get("outputs", [])
        except ValueError:
            outputs = []
        files = sorted({Path(o["path"]) for o in outputs if str(o.get("path", "")).endswith(".parquet")})
        files = [f for f in files if f.name.startswith("part-") and f.is_file()]
    if not files:
        files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise InputError(f"no part-*.parquet files in {folder}: run `triglot data clean` first")
    return files


def _check_columns(path: Path, needed: tuple[str, ...]) -> None:
    names = pq.ParquetFile(path).schema_arrow.names
    missing = [c for c in needed if c not in names]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)}; clean output needs {', '.join(COLUMNS)}")


def iter_documents(files: list[Path], batch_rows: int = 2048) -> Iterator[dict]:
    """Every document of the clean shards, as dicts with id, text, language, source."""
    for path in files:
        _check_columns(path, COLUMNS)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
            yield from batch.to_pylist()


def chars_by_language(files: list[Path]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for path in files:
        _check_columns(path, ("text", "language"))
        for batch in pq.ParquetFile(path).iter_batches(columns=["text", "language"]):
            lengths = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
            for lang, n in zip(batch.column("language").to_pylist(), lengths, strict=True):
                totals[lang] = totals.get(lang, 0) + int(n)
    return totals


def unit_hash(seed: int, doc_id: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the document id."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


@dataclass
class Sample:
    """Training texts by language, held-out texts for fertility, and what was asked versus taken."""

    train: dict[str, list[str]] = field(default_factory=dict)
    heldout: dict[str, list[str]] = field(default_factory=dict)
    available_chars: dict[str, int] = field(default_factory=dict)
    target_chars: dict[str, int] = field(default_factory=dict)
    taken_chars: dict[str, int] = field(default_factory=dict)

    def texts(self) -> list[str]:
        return [t for lang in sorted(self.train) for t in self.train[lang]]

    def summary(self) -> dict:
        return {"available_chars": self.available_chars, "target_chars": self.target_chars,
                "taken_chars": self.taken_chars, "documents": {k: len(v) for k, v in self.train.items()},
                "heldout_documents": {k: len(v) for k, v in self.heldout.items()}}


def draw_sample(files: list[Path], ratios: dict[str, float], total_chars: int, seed: int,
                heldout_docs: int) -> Sample:
    """Keep each document of language L with probability target(L) / available(L)."""
    available = chars_by_language(files)
    weight = sum(ratios.get(lang, 0.0) for lang in available)
    if weight <= 0:
        raise InputError(f"clean data has languages {sorted(available)} but tokenizer.language_ratios gives "
                         "none of them a positive share; add them to tokenizer.language_ratios")
    sample = Sample(available_chars=available)
    keep_p = {}
    for lang, chars in available.items():
        target = int(total_chars * ratios.get(lang, 0.0) / weight)
        sample.target_chars[lang] = target
        keep_p[lang] = min(1.0, target / chars) if chars else 0.0
    for doc in iter_documents(files):
        lang, text = doc["language"], doc["text"]
        if not text:
            continue
        u = unit_hash(seed, doc["id"])
        if u < keep_p[lang]:
            sample.train.setdefault(lang, []).append(text)
            sample.taken_chars[lang] = sample.taken_chars.get(lang, 0) + len(text)
        elif len(sample.heldout.setdefault(lang, [])) < heldout_docs:
            sample.heldout[lang].append(text)
    for lang, texts in sample.train.items():
        # A language wholly used for training is scored on (some of) its training text.
        if not sample.heldout.get(lang):
            sample.heldout[lang] = texts[:heldout_docs]
    return sample
