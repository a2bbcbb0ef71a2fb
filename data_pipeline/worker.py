"""Per-document work, run in worker processes: one call cleans one work unit (a slice of one file).

A unit writes `<uid>.parquet` (kept documents plus dedup keys) and then `<uid>.json` (its counters);
a unit whose JSON exists for the same input file size and mtime is not redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from triglot.data_pipeline.dedup import band_keys, exact_key
from triglot.data_pipeline.filters import quality_reason
from triglot.data_pipeline.langid import LangResult, explain, identify
from triglot.data_pipeline.normalize import normalize_text
from triglot.data_pipeline.pii import scrub_pii
from triglot.data_pipeline.readers import read_records, splits_by_bytes
from triglot.data_pipeline.stats import CleanStats

from triglot.config.data import SENTENCE_FILTERS
from triglot.errors import TriglotError

log = logging.getLogger(__name__)

UNIT_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("language", pa.string()), ("source", pa.string()),
    ("orig_hash", pa.string()), ("paragraph_languages", pa.string()), ("chars", pa.int64()),
    ("exact_key", pa.uint64()), ("bands", pa.binary()), ("order", pa.int64()),
])
# A document's place in run order: file ordinal * 2**40 + its record index (line number for byte ranges),
# so dedup keeps the same copy however the files were split among units, workers and shards.
ORDER_STRIDE = 1 << 40
CHINESE = ("zh-Hans", "zh-Hant", "yue")


@dataclass(frozen=True)
class WorkUnit:
    source_index: int
    source: str
    file: str
    file_index: int  # ordinal of the file in the run
    part: int
    parts: int
    # "bytes": lines starting in byte range part/parts of the file; "stride": records whose index % parts == part.
    split: str
    size: int
    mtime_ns: int
    cap: int = 0  # most records this unit reads (0 = all)

    @property
    def uid(self) -> str:
        digest = hashlib.sha1(self.file.encode("utf-8")).hexdigest()[:10]
        return f"{self.source_index:03d}-{self.source}-{digest}-{self.part:03d}of{self.parts:03d}"


    @property
    def byte_range(self) -> tuple[int, int] | None:
        if self.split != "bytes":
            return None
        return self.size * self.part // self.parts, self.size * (self.part + 1) // self.parts


def _split(spec, path: Path) -> str:
    """How a file is divided among units: byte ranges (line formats), record strides (formats parsed
    from the start: CSV, WikiExtractor, parquet), or not at all (compressed, single-record formats)."""
    if splits_by_bytes(spec, path):
        return "bytes"
    if spec.format in ("csv", "tsv", "wikiextractor", "parquet") and path.suffix.lower() not in (".gz", ".zst", ".zstd"):
        return "stride"
    return "none"


def plan_units(files_by_source: list[tuple[Any, list[Path]]], unit_bytes: int, cap: int) -> list[WorkUnit]:
    """Split every input file into units of about `unit_bytes`, the same way on every node."""
    units = []
    ordinal = 0
    for index, (spec, files) in enumerate(files_by_source):
        planned = []
        for path in files:
            try:
                stat = path.stat()
                size, mtime_ns, split = stat.st_size, stat.st_mtime_ns, _split(spec, path)
            except OSError:  # a dangling link or a file gone since the glob: one unit reports cannot_open
                size, mtime_ns, split = 0, 0, "none"
            parts = max(1, math.ceil(size / unit_bytes)) if split != "none" else 1
            planned += [(str(path), ordinal, k, parts, split, size, mtime_ns) for k in range(parts)]
            ordinal += 1
        per_unit = math.ceil(cap / len(planned)) if cap and planned else 0
        units += [WorkUnit(index, spec.name, f, fi, k, n, sp, size, mtime_ns, per_unit)
                  for f, fi, k, n, sp, size, mtime_ns in planned]
    return units


def unit_done(unit: WorkUnit, units_dir: Path) -> dict | None:
    """The unit's saved summary when it finished on the same input file; None otherwise."""
    try:
        saved = json.loads((units_dir / f"{unit.uid}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("unit") != asdict(unit) or not (units_dir / f"{unit.uid}.parquet").is_file():
        return None
    return saved


def evidence(text: str, lang: LangResult) -> str:
    """What decided a label, for the report's examples: the Cantonese score and its strongest n-grams,
    script counts, and whether the source's hint decided."""
    parts = [f"han {lang.han}, latin words {lang.latin_words}"]
    if lang.han:
        parts.append(f"yue score {lang.yue_score:+.1f} ({explain(text) or 'no known n-grams'})")
    if lang.paragraphs:
        parts.append("paragraphs " + ",".join(lang.paragraphs))
    if lang.hinted:
        parts.append("label from the source's language hint")
    return "; ".join(parts)


def source_thresholds(spec, cfg, language: str):
    """The language's thresholds, then the `kind: sentences` preset, then the source's own `filters:`."""
    base = cfg.filters.get(language) or cfg.filters.get("other")
    if base is None or (spec.kind == "documents" and not spec.filters):
        return base
    preset = SENTENCE_FILTERS if spec.kind == "sentences" else {}
    return replace(base, **{**preset, **spec.filters})


def clean_document(text: str, doc_id: str, spec, cfg, stats: CleanStats) -> dict | None:
    """Normalise, identify, filter, scrub and key one document; None when it is removed (and counted)."""
    source = spec.name
    orig_hash = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
    text = normalize_text(text, cfg.fix_mojibake)
    if not text:
        stats.language_in("empty", 0, source)
        stats.remove("empty", source, "empty", doc_id, text)
        return None
    lang = identify(text, cfg.langid, spec.language)
    stats.language_in(lang.language, len(text), source, lang.hinted)
    if len(stats.label_examples[lang.language]) < stats.examples_per_reason:
        stats.label_example(lang.language, doc_id, text, evidence(text, lang))
    if lang.language not in cfg.keep_languages:
        reason = f"language_{lang.language}"
        stats.remove(reason, source, lang.language, doc_id, text,
                     evidence(text, lang) if stats.wants_example(reason) else "")
        return None
    thresholds = source_thresholds(spec, cfg, lang.language)
    reason = quality_reason(text, lang.language, thresholds, cfg.disabled_filters) if thresholds else None
    if reason:
        stats.remove(reason, source, lang.language, doc_id, text,
                     evidence(text, lang) if stats.wants_example(reason) else "")
        return None
    if cfg.pii.enabled:
        text, found = scrub_pii(text, cfg.pii.types)
        for kind, count in found.items():
            stats.pii[kind] += count
    chinese = lang.language in CHINESE or (lang.language == "mixed" and lang.han > lang.latin_words)
    return {
        "id": doc_id, "text": text, "language": lang.language, "source": source, "orig_hash": orig_hash,
        "paragraph_languages": ",".join(lang.paragraphs) if lang.language == "mixed" else "",
        "chars": len(text), "exact_key": exact_key(text), "bands": band_keys(text, chinese, cfg.dedup),
    }


def process_unit(unit: WorkUnit, spec, cfg, units_dir: Path) -> dict:
    """Clean one unit and save it; returns its summary (also when it was already done)."""
    saved = unit_done(unit, units_dir)
    if saved is not None:
        return {**saved, "skipped": True}
    stats = CleanStats(cfg.examples_per_reason)
    rows: list[dict] = []
    stem = Path(unit.file).name
    taken = 0
    stride = unit.split == "stride"
    for index, record in enumerate(read_records(Path(unit.file), spec, cfg.max_record_bytes, unit.byte_range)):
        if stride and index % unit.parts != unit.part:
            continue
        if unit.cap and taken >= unit.cap:
            break
        taken += 1
        doc_id = f"{spec.name}/{stem}:{record.locator.replace(' ', '')}"
        if record.error:
            stats.bad_record(spec.name, unit.file, record.locator, record.error)
            continue
        stats.read(spec.name, len(record.text))
        try:
            row = clean_document(record.text, doc_id, spec, cfg, stats)
        except (MemoryError, TriglotError):
            raise
        except Exception as err:  # one document that breaks a step is counted, not the end of the run
            log.warning("clean: %s failed with %s: %s", doc_id, type(err).__name__, err)
            stats.remove(f"processing_error: {type(err).__name__}", spec.name, "unknown", doc_id, record.text)
            continue
        if row is not None:
            seq = int(record.locator.split()[1]) if unit.split == "bytes" else index
            row["order"] = unit.file_index * ORDER_STRIDE + seq
            rows.append(row)
    units_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=UNIT_SCHEMA)
    tmp = units_dir / f"{unit.uid}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, units_dir / f"{unit.uid}.parquet")
    summary = {"unit": asdict(unit), "kept": len(rows), "stats": stats.to_dict()}
    tmp = units_dir / f"{unit.uid}.json.tmp"
    tmp.write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, units_dir / f"{unit.uid}.json")
    return {**summary, "skipped": False}
