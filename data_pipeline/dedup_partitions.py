"""Global dedup partitioned by key bucket, so that each of K tasks holds about 1/K of the run's keys.

Two passes of K partition tasks each, then the write (merge.merge_units):
- exact: task p reads, from every unit, the exact keys whose bucket is p and drops each later copy;
- near: task p reads the band keys whose bucket is p of the documents the exact pass kept, and drops every
  document with a (band, key) that an earlier document already had.
This equals dedup.duplicate_masks: today's rule is first occurrence per key (no clustering), and every key
lives in exactly one bucket, so each partition decides its keys alone and the union of the drop lists is the
single-process answer. The near pass needs the whole exact pass (an exact copy's band keys do not count, and
its exact key may sit in another bucket than its band keys), hence two passes.

A task writes its drop list (`<phase>-<p>-of-<K>.npy`: sorted int64 ids, unit index << 32 | row) and then a
marker JSON naming the units it read; a rerun over the same units skips it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from triglot.data_pipeline.dedup import key_bucket

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
ROW_BITS = 32
PHASES = ("exact", "near")


@dataclass(frozen=True)
class DedupPlan:
    """What every partition task of one run agrees on: the units (in plan order), K and the key layout."""

    unit_files: tuple[Path, ...]
    folder: Path
    partitions: int
    bands: int
    exact: bool = True
    near: bool = True

    @property
    def phases(self) -> list[str]:
        return [phase for phase in PHASES if getattr(self, phase)]

    def drop_path(self, phase: str, p: int) -> Path:
        return self.folder / f"{phase}-{p:04d}-of-{self.partitions:04d}.npy"

    def marker_path(self, phase: str, p: int) -> Path:
        return self.drop_path(phase, p).with_suffix(".json")

    def fingerprint(self) -> str:
        """Hash of the unit files (name, size, mtime) and the settings: a changed unit redoes every partition."""
        digest = hashlib.sha256(f"{self.partitions} {self.bands} {self.exact} {self.near}".encode())
        for path in self.unit_files:
            stat = path.stat()
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:20]


def dedup_plan(unit_files: list[Path], dedup) -> DedupPlan:
    """The plan for the units of one run folder; drop lists go to <work>/dedup/k<K> beside <work>/units."""
    partitions = int(getattr(dedup, "partitions", 1))
    if partitions < 1:
        raise ConfigError(f"data.dedup.partitions is {partitions}; use 1 or more (e.g. data.dedup.partitions=4)")
    folder = Path(unit_files[0]).parent.parent / "dedup" / f"k{partitions:04d}" if unit_files else Path(".")
    return DedupPlan(tuple(Path(f) for f in unit_files), folder, partitions, int(dedup.bands),
                     bool(dedup.exact), bool(dedup.near))


def doc_ids(unit: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(unit) << np.int64(ROW_BITS)) | rows.astype(np.int64)


def band_matrix(column: pa.ChunkedArray, bands: int) -> np.ndarray:
    """The `bands` column (fixed-size binary blobs) as an (n, bands) uint64 array, read from Arrow's buffers."""
    parts = []
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        if len(data) != len(chunk) * bands * 8:
            raise InputError(f"band keys are not {bands} a document; data.dedup.bands differs from the units' own")
        parts.append(data.view("<u8").reshape(len(chunk), bands))
    return np.concatenate(parts).astype(np.uint64) if parts else np.zeros((0, bands), np.uint64)


def run_rank(order: np.ndarray) -> np.ndarray:
    """Each document's place in run order; ties keep load order, as the single-process stable argsort does."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[np.argsort(order, kind="stable")] = np.arange(len(order))
    return rank


def later_copies(keys: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """True for every entry whose key an entry of lower rank also has (all but the first of each key)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=bool)
    by_key = np.lexsort((rank, keys))
    sorted_keys = keys[by_key]
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    later = np.empty(len(keys), dtype=bool)
    later[by_key] = ~first
    return later


class DropLists:
    """The drop lists of one phase, memory-mapped; `unit_mask` gives one unit's dropped rows."""

    def __init__(self, plan: DedupPlan, phase: str):
        on = phase in plan.phases
        self.lists = [np.load(plan.drop_path(phase, p), mmap_mode="r") for p in range(plan.partitions)] if on else []

    def unit_mask(self, unit: int, rows: int) -> np.ndarray:
        mask = np.zeros(rows, dtype=bool)
        low, high = doc_ids(unit, np.zeros(1))[0], doc_ids(unit + 1, np.zeros(1))[0]
        for ids in self.lists:
            start, stop = np.searchsorted(ids, [low, high])
            mask[np.asarray(ids[start:stop]) & ((1 << ROW_BITS) - 1)] = True
        return mask


def exact_drops(plan: DedupPlan, p: int) -> tuple[np.ndarray, int]:
    """(ids of later exact copies among the keys of bucket p, keys held)."""
    keys, orders, ids = [], [], []
    for unit, path in enumerate(plan.unit_files):
        table = pq.read_table(path, columns=["exact_key", "order"])
        exact = table.column("exact_key").to_numpy()
        rows = np.flatnonzero(key_bucket(exact, plan.partitions) == p)
        keys.append(exact[rows])
        orders.append(table.column("order").to_numpy()[rows])
        ids.append(doc_ids(unit, rows))
    if not keys:
        return np.zeros(0, np.int64), 0
    keys_all, ids_all = np.concatenate(keys), np.concatenate(ids)
    return ids_all[later_copies(keys_all, run_rank(np.concatenate(orders)))], len(keys_all)


def near_drops(plan: DedupPlan, p: int) -> tuple[np.ndarray, int]:
    """(ids of documents kept by the exact pass that repeat a (band, key) of bucket p, band keys held)."""
    exact = DropLists(plan, "exact")
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in plan.unit_files)
    ref_type = np.uint32 if total < 1 << 32 else np.int64
    keys: list[list[np.ndarray]] = [[] for _ in range(plan.bands)]
    refs: list[list[np.ndarray]] = [[] for _ in range(plan.bands)]
    orders, ids, held = [], [], 0
    for unit, path in enumerate(plan.unit_files):
        table = pq.read_table(path, columns=["bands", "order"])
        alive = np.flatnonzero(~exact.unit_mask(unit, table.num_rows))
        matrix = band_matrix(table.column("bands"), plan.bands)[alive]
        mine = key_bucket(matrix, plan.partitions) == p
        has = mine.any(axis=1)
        ref = (np.cumsum(has) - 1 + held).astype(ref_type)  # a document's place among those held
        for band in range(plan.bands):
            keys[band].append(matrix[mine[:, band], band])
            refs[band].append(ref[mine[:, band]])
        orders.append(table.column("order").to_numpy()[alive[has]])
        ids.append(doc_ids(unit, alive[has]))
        held += int(has.sum())
    if not ids:
        return np.zeros(0, np.int64), 0
    rank, dropped, entries = run_rank(np.concatenate(orders)), np.zeros(held, dtype=bool), 0
    for band in range(plan.bands):
        band_keys, band_refs = np.concatenate(keys[band]), np.concatenate(refs[band])
        keys[band] = refs[band] = []
        entries += len(band_keys)
        dropped[band_refs[later_copies(band_keys, rank[band_refs])]] = True
    return np.concatenate(ids)[dropped], entries


def partition_done(plan: DedupPlan, phase: str, p: int, fingerprint: str | None = None) -> bool:
    try:
        marker = json.loads(plan.marker_path(phase, p).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("fingerprint") == (fingerprint or plan.fingerprint()) and plan.drop_path(phase, p).is_file()


def run_partition(plan: DedupPlan, phase: str, p: int, force: bool = False) -> dict:
    """Run partition p of `phase` unless its marker says it is done (or `force`); returns the marker."""
    if phase not in plan.phases:
        raise ConfigError(f"data.dedup.{phase} is false; there is no {phase} pass to run")
    if not 0 <= p < plan.partitions:
        raise ConfigError(f"--partition {p}: need 0 <= p < data.dedup.partitions ({plan.partitions})")
    fingerprint = plan.fingerprint()
    if not force and partition_done(plan, phase, p, fingerprint):
        return {**json.loads(plan.marker_path(phase, p).read_text(encoding="utf-8")), "skipped": True}
    if phase == "near" and plan.exact:
        missing = [q for q in range(plan.partitions) if not partition_done(plan, "exact", q, fingerprint)]
        if missing:
            raise InputError(f"near pass needs the exact pass first: exact partition {missing[0]} of "
                             f"{plan.partitions} is not done (triglot data merge --phase exact --partition {missing[0]})")
    started = time.time()
    dropped, keys = (exact_drops if phase == "exact" else near_drops)(plan, p)
    plan.folder.mkdir(parents=True, exist_ok=True)
    tmp = plan.drop_path(phase, p).with_suffix(".npy.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, dropped.astype(np.int64))
    os.replace(tmp, plan.drop_path(phase, p))
    marker = {"phase": phase, "partition": p, "of": plan.partitions, "fingerprint": fingerprint,
              "keys": keys, "dropped": len(dropped), "seconds": round(time.time() - started, 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    tmp = plan.marker_path(phase, p).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(marker), encoding="utf-8")
    os.replace(tmp, plan.marker_path(phase, p))
    log.info("dedup %s partition %d/%d: %d keys, %d dropped", phase, p, plan.partitions, keys, len(dropped))
    return {**marker, "skipped": False}


def missing_partitions(plan: DedupPlan) -> list[tuple[str, int]]:
    fingerprint = plan.fingerprint()
    return [(phase, p) for phase in plan.phases for p in range(plan.partitions)
            if not partition_done(plan, phase, p, fingerprint)]


def run_partitions(plan: DedupPlan) -> list[dict]:
    """Every partition of every pass not yet done: in this process for K = 1, else in K worker processes."""
    if not plan.unit_files or not missing_partitions(plan):
        return []
    markers = []
    if plan.partitions == 1:
        return [run_partition(plan, phase, 0) for phase in plan.phases]
    with ProcessPoolExecutor(max_workers=plan.partitions, mp_context=get_context("spawn")) as pool:
        for phase in plan.phases:  # the near pass starts when every exact partition is done
            futures = [pool.submit(run_partition, plan, phase, p) for p in range(plan.partitions)]
            markers += [future.result() for future in futures]
    return markers


def stage_dedup_plan(cfg) -> DedupPlan:
    """The plan of a run's clean stage, once every work unit is done (else an InputError naming the first)."""
    from triglot.data_pipeline.clean import data_options, resolve_sources, validate, work_dir
    from triglot.data_pipeline.worker import plan_units, unit_done

    from triglot.paths import stage_dir

    data = data_options(cfg)
    validate(data)
    units = plan_units(resolve_sources(data), data.unit_bytes, data.max_docs_per_source)
    units_dir = work_dir(stage_dir(cfg, "clean", data.output_dir), cfg) / "units"
    missing = [u.uid for u in units if unit_done(u, units_dir) is None]
    if missing:
        raise InputError(f"{len(missing)} of {len(units)} work units are not done (first: {missing[0]}); "
                         f"run the missing `triglot data clean --shard I/N` tasks first")
    return dedup_plan([units_dir / f"{u.uid}.parquet" for u in units], data.dedup)
