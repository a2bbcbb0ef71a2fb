"""Global step after all units are done: exact and near-duplicate removal across the whole run, then
the final part-*.parquet shards, streamed unit by unit so memory holds only keys, not text.

The parts are written aside in `_merging/` and renamed into place only when every one is closed and on
disk; the caller has withdrawn the old manifest first and writes the new one last.

The dedup itself runs in data.dedup.partitions key buckets (dedup_partitions.py); `load_keys` with
dedup.duplicate_masks is the same dedup in one process, kept as the reference it is checked against.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm
from triglot.data_pipeline.dedup_partitions import DropLists, band_matrix, dedup_plan, run_partitions
from triglot.data_pipeline.stats import CleanStats

from triglot.paths import fsync_path

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = ["id", "text", "language", "source", "orig_hash", "paragraph_languages"]
# Where a merge writes its parts before they take their final names; a leftover one means a merge died.
MERGING = "_merging"


def load_keys(unit_files: list[Path], bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Exact keys, band keys (n x bands), run order and rows per unit, reading only the key columns."""
    exact, band_rows, order, counts = [], [], [], []
    for path in unit_files:
        table = pq.read_table(path, columns=["exact_key", "bands", "order"])
        counts.append(table.num_rows)
        exact.append(table.column("exact_key").to_numpy())
        order.append(table.column("order").to_numpy())
        band_rows.append(band_matrix(table.column("bands"), bands))
    if not counts:
        return np.zeros(0, np.uint64), np.zeros((0, bands), np.uint64), np.zeros(0, np.int64), []
    return np.concatenate(exact), np.concatenate(band_rows), np.concatenate(order), counts


class PartWriter:
    """Rolls part-00000.parquet, part-00001.parquet ... every `rows_per_part` rows."""

    def __init__(self, out_dir: Path, rows_per_part: int):
        self.out_dir, self.rows_per_part = out_dir, rows_per_part
        self.paths: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                path = self.out_dir / f"part-{len(self.paths):05d}.parquet"
                self.paths.append(path)
                self.writer = pq.ParquetWriter(path, table.schema)
                self.rows_in_part = 0
            take = min(table.num_rows, self.rows_per_part - self.rows_in_part)
            self.writer.write_table(table.slice(0, take))
            self.rows_in_part += take
            table = table.slice(take)
            if self.rows_in_part >= self.rows_per_part:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            fsync_path(self.paths[-1])


def publish_parts(written: list[Path], out_dir: Path) -> list[Path]:
    """Give the finished parts written aside their final names in `out_dir`."""
    final = []
    for path in written:
        os.replace(path, out_dir / path.name)
        final.append(out_dir / path.name)
    fsync_path(out_dir)
    return final


def merge_units(unit_files: list[Path], out_dir: Path, cfg, stats: CleanStats) -> tuple[list[Path], dict]:
    """Deduplicate across all units (in run order, earliest copy kept) and write the final shards.

    Returns the part files and the kept counts by source and language. Dedup partitions not yet done
    (by `triglot data merge --phase P --partition p` tasks) run first, in data.dedup.partitions processes.
    """
    plan = dedup_plan(unit_files, cfg.dedup)
    run_partitions(plan)
    exact_drops, near_drops = DropLists(plan, "exact"), DropLists(plan, "near")
    # The old parts went unread when their manifest was withdrawn; their space is needed now.
    for old in out_dir.glob("part-*.parquet"):
        old.unlink()
    aside = out_dir / MERGING
    shutil.rmtree(aside, ignore_errors=True)  # what a merge that died left
    aside.mkdir(parents=True)
    writer = PartWriter(aside, cfg.rows_per_part)
    kept = {"by_source": {}, "by_language": {}, "docs": 0, "chars": 0}
    removed = {"exact": 0, "near": 0}
    try:
        for unit, path in enumerate(tqdm(unit_files, desc="write shards", unit="unit", leave=False)):
            table = pq.read_table(path)
            ex = exact_drops.unit_mask(unit, table.num_rows)
            nd = near_drops.unit_mask(unit, table.num_rows)
            removed["exact"] += int(ex.sum())
            removed["near"] += int((nd & ~ex).sum())
            _count_removed(table, ex, "dedup_exact", stats)
            _count_removed(table, nd & ~ex, "dedup_near", stats)
            table = table.filter(pa.array(~(ex | nd)))
            _count_kept(table, kept)
            writer.write(table.select(OUTPUT_COLUMNS))
        writer.close()
    except BaseException:
        shutil.rmtree(aside, ignore_errors=True)  # a full disk gets its space back
        raise
    log.info("dedup over %d units in %d partitions: %d exact, %d near duplicates", len(unit_files),
             plan.partitions, removed["exact"], removed["near"])
    parts = publish_parts(writer.paths, out_dir)
    shutil.rmtree(aside)
    return parts, kept


def _count_removed(table: pa.Table, mask: np.ndarray, reason: str, stats: CleanStats) -> None:
    for i in np.flatnonzero(mask):
        row = {c: table.column(c)[int(i)].as_py() for c in ("id", "text", "language", "source")}
        stats.remove(reason, row["source"], row["language"], row["id"], row["text"])


def _count_kept(table: pa.Table, kept: dict) -> None:
    chars = table.column("chars").to_pylist()
    for source, language, n in zip(table.column("source").to_pylist(), table.column("language").to_pylist(), chars, strict=False):
        for key, name in (("by_source", source), ("by_language", language)):
            entry = kept[key].setdefault(name, {"docs": 0, "chars": 0})
            entry["docs"] += 1
            entry["chars"] += n
        kept["docs"] += 1
        kept["chars"] += n
