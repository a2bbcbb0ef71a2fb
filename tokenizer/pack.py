"""`triglot data pack`: cleaned parquet documents to memory-mapped token shards that training reads.

Each output shard is a fixed row range of one clean file, encoded by a pool of workers and marked done
when written, so an interrupted pack resumes shard by shard. Up to THREAD_WORKERS workers are threads of
this process (the tokenizer releases the GIL while it encodes, and threads cost no start-up); more are
processes, so that the Python work around each batch never queues on one GIL. A (re)pack first removes
meta.json and the manifest, and writes them last (each atomically): only a finished pack has them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from triglot.tokenizer.sample import check_no_nulls, clean_files, reading

from triglot.errors import ConfigError, InputError
from triglot.manifest import MANIFEST, StageManifest
from triglot.packed import META, ShardWriter, token_dtype, write_meta
from triglot.paths import stage_dir

log = logging.getLogger(__name__)
DONE = ".done.json"


@dataclass(frozen=True)
class ShardTask:
    name: str
    file: str
    start: int
    stop: int


@dataclass(frozen=True)
class EncodeSpec:
    """What every worker needs to encode and write a shard."""

    tokenizer_file: str
    out_dir: str
    dtype: str
    eos_id: int
    bos_id: int | None
    batch_size: int
    run_key: str


def plan_shards(files: list[Path], docs_per_shard: int) -> list[ShardTask]:
    """Consecutive row ranges of each file, named in order: shard-00000, shard-00001, ..."""
    tasks = []
    for path in files:
        rows = pq.ParquetFile(path).metadata.num_rows
        for start in range(0, rows, docs_per_shard):
            tasks.append(ShardTask(f"shard-{len(tasks):05d}", str(path), start, min(rows, start + docs_per_shard)))
    return tasks


def read_rows(path: str, start: int, stop: int, columns: list[str]) -> dict[str, list]:
    """Rows [start, stop) of a parquet file, reading only the row groups that hold them; an unreadable
    file or a null in the rows is an InputError naming the file (and the row)."""
    with reading(Path(path)):
        pf = pq.ParquetFile(path)
        groups, first, offset = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if offset + n > start and offset < stop:
                groups.append(g)
                first = offset if first is None else first
            offset += n
        if not groups:
            return {c: [] for c in columns}
        table = pf.read_row_groups(groups, columns=columns).slice(start - first, stop - start)
    check_no_nulls(path, table, start)
    return {c: table.column(c).to_pylist() for c in columns}


# Workers that are threads of the packing process; past this many, the Python work around each batch
# (row reads, id arrays, counts, writes: about a tenth of a worker's time) would queue on the GIL.
THREAD_WORKERS = 4
_LOCAL = threading.local()  # one tokenizer per worker thread: nothing is shared between encode calls


def _init_worker() -> None:
    # One worker per core does the parallelism; the tokenizer's own threads would only compete for the cores.
    # (tokenizers reads this at every call.)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _load_tokenizer(path: str) -> Any:
    cache = _LOCAL.__dict__.setdefault("tokenizers", {})
    if path not in cache:
        from tokenizers import Tokenizer

        cache[path] = Tokenizer.from_file(path)
    return cache[path]


def _with_specials(encoded: list[list[int]], bos_id: int | None, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """One id array for a batch, each document followed by EOS (and preceded by BOS), and the lengths."""
    raw = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    body = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64, count=int(raw.sum()))
    ends = np.cumsum(raw)
    out = np.insert(body, ends, eos_id)
    lengths = raw + 1
    if bos_id is not None:
        out = np.insert(out, ends - raw + np.arange(len(raw)), bos_id)
        lengths += 1
    return out, lengths


def encode_shard(task: ShardTask, spec: EncodeSpec) -> dict:
    """Encode one shard's documents (EOS appended), write it, mark it done; return its counts."""
    started = time.perf_counter()
    tok = _load_tokenizer(spec.tokenizer_file)
    rows = read_rows(task.file, task.start, task.stop, ["id", "text", "language", "source"])
    writer = ShardWriter(spec.out_dir, task.name, np.dtype(spec.dtype))
    by_language: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    texts, languages, sources, doc_ids = rows["text"], rows["language"], rows["source"], rows["id"]
    encoding = 0.0
    for lo in range(0, len(texts), spec.batch_size):
        hi = min(lo + spec.batch_size, len(texts))
        tick = time.perf_counter()
        encoded = [enc.ids for enc in tok.encode_batch_fast(texts[lo:hi], add_special_tokens=False)]
        encoding += time.perf_counter() - tick
        ids, lengths = _with_specials(encoded, spec.bos_id, spec.eos_id)
        writer.add_flat(ids, lengths, languages[lo:hi], sources[lo:hi], doc_ids[lo:hi])
        for n, language, source in zip(lengths.tolist(), languages[lo:hi], sources[lo:hi], strict=True):
            by_language[language] += n
            by_source[source] += n
    shard = writer.close()
    shard.update(tokens_by_language=dict(by_language), tokens_by_source=dict(by_source), hashed=writer.hashed,
                 seconds={"task": time.perf_counter() - started, "encode": encoding})
    done = {"run_key": spec.run_key, "task": asdict(task), "shard": shard}
    tmp = Path(spec.out_dir) / f"{task.name}{DONE}.tmp"
    tmp.write_text(json.dumps(done, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, Path(spec.out_dir) / f"{task.name}{DONE}")
    return shard


def finished_shard(out_dir: Path, task: ShardTask, run_key: str) -> dict | None:
    """The counts of a shard a previous, interrupted run of this same pack already wrote."""
    try:
        done = json.loads((out_dir / f"{task.name}{DONE}").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if done.get("run_key") != run_key or done.get("task") != asdict(task):
        return None
    if not (out_dir / f"{task.name}.bin").is_file() or not (out_dir / f"{task.name}.idx.parquet").is_file():
        return None
    return done["shard"]


def run_key_of(manifest: StageManifest, add_bos: bool) -> str:
    """Identifies this pack's inputs and settings; a shard done under another key is redone."""
    inputs = sorted((e["path"], e.get("sha256", "")) for e in manifest.inputs)
    blob = json.dumps([manifest.config_hash, inputs, add_bos])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pool(workers: int) -> Executor:
    if workers <= THREAD_WORKERS:
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pack")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


def _encode_all(pending: list[ShardTask], spec: EncodeSpec, workers: int) -> dict[str, dict]:
    workers = min(workers, len(pending))
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    _init_worker()  # for the in-process workers; restored after
    try:
        if workers <= 1:
            return {t.name: encode_shard(t, spec) for t in pending}
        pool = _pool(workers)
        try:
            futures = {t.name: pool.submit(encode_shard, t, spec) for t in pending}
            return {name: f.result() for name, f in futures.items()}
        except BaseException:
            # A failed shard or Ctrl-C: drop the queued shards, let the running ones finish (each is marked
            # done only when whole), then raise.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _withdraw_completion(out_dir: Path) -> None:
    """meta.json (then the manifest) mark a packed folder complete: remove them before any shard is
    rewritten, so a repack that dies midway leaves a folder training refuses, not old meta over new shards."""
    for name in (META, MANIFEST):
        (out_dir / name).unlink(missing_ok=True)


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    for path in out_dir.glob("shard-*"):
        if path.name.split(".")[0] not in keep:
            path.unlink()


def _tokenizer_files(tok_dir: Path) -> list[Path]:
    needed = [tok_dir / "tokenizer.json", tok_dir / "tokenizer_config.json"]
    for path in needed:
        if not path.is_file():
            raise InputError(f"{path} not found: run `triglot tokenizer train` first or set pack.tokenizer_dir "
                             "to a Hugging Face tokenizer folder with a tokenizer.json")
    return needed


def run_pack_stage(cfg: Any, force: bool = False) -> dict:
    """Pack the clean output with the run's tokenizer; skip when the manifest is current."""
    from triglot.tokenizer.hf_folder import special_ids, vocab_length

    section = cfg.pack
    if section.docs_per_shard <= 0 or section.batch_size <= 0 or section.workers < 0:
        raise ConfigError("pack.docs_per_shard and pack.batch_size must be positive and pack.workers >= 0")
    in_dir = stage_dir(cfg, "clean", section.input_dir)
    tok_dir = stage_dir(cfg, "tokenizer", section.tokenizer_dir)
    out_dir = stage_dir(cfg, "pack", section.output_dir)
    files = clean_files(in_dir)
    manifest = StageManifest.open(out_dir, stage="pack", config=section, inputs=[*files, *_tokenizer_files(tok_dir)])
    if manifest.is_current() and not force:
        log.info("packed data in %s is current; skipping (use --force to repack)", out_dir)
        return manifest.previous
    started = time.time()
    ids = special_ids(tok_dir)
    if ids["eos_id"] is None:
        raise InputError(f"{tok_dir}/tokenizer_config.json names no eos_token that tokenizer.json knows")
    if section.add_bos and ids["bos_id"] is None:
        raise ConfigError(f"pack.add_bos is true but {tok_dir} has no bos_token; set pack.add_bos=false")
    from tokenizers import Tokenizer

    vocab_size = vocab_length(Tokenizer.from_file(str(tok_dir / "tokenizer.json")))
    dtype = token_dtype(vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    _withdraw_completion(out_dir)
    run_key = run_key_of(manifest, section.add_bos) if not force else f"force-{started}"
    spec = EncodeSpec(str(tok_dir / "tokenizer.json"), str(out_dir), dtype.name, ids["eos_id"],
                      ids["bos_id"] if section.add_bos else None, section.batch_size, run_key)
    tasks = plan_shards(files, section.docs_per_shard)
    _remove_stale(out_dir, {t.name for t in tasks})
    shards = {t.name: s for t in tasks if (s := finished_shard(out_dir, t, run_key)) is not None}
    if shards:
        log.info("resuming: %d of %d shards already packed", len(shards), len(tasks))
        for shard in shards.values():
            shard.pop("seconds", None)  # that run's time, not this one's
    workers = section.workers or os.cpu_count() or 1
    shards.update(_encode_all([t for t in tasks if t.name not in shards], spec, workers))
    ordered = [shards[t.name] for t in tasks]
    return _finish(manifest, out_dir, ordered, vocab_size, dtype, ids, section, tok_dir, started)


def _finish(manifest: StageManifest, out_dir: Path, shards: list[dict], vocab_size: int, dtype: np.dtype,
            ids: dict, section: Any, tok_dir: Path, started: float) -> dict:
    by_language: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    for s in shards:
        by_language.update(s["tokens_by_language"])
        by_source.update(s["tokens_by_source"])
    tokens = sum(s["tokens"] for s in shards)
    documents = sum(s["documents"] for s in shards)
    seconds = time.time() - started
    meta = write_meta(out_dir, dtype=dtype, vocab_size=vocab_size, eos_id=ids["eos_id"],
                      shards=[{k: s[k] for k in ("name", "tokens", "documents")} for s in shards],
                      bos_id=ids["bos_id"], pad_id=ids["pad_id"], add_bos=bool(section.add_bos),
                      tokenizer=str(tok_dir), tokens_by_language=dict(by_language), tokens_by_source=dict(by_source))
    outputs = [out_dir / f"{s['name']}{ext}" for s in shards for ext in (".bin", ".idx.parquet")] + [meta]
    counts = {"documents": documents, "tokens": tokens, "shards": len(shards),
              "tokens_by_language": dict(by_language), "tokens_by_source": dict(by_source)}
    # Where the workers' time went: shard tasks in all (read, encode, write, hash) and the tokenizer calls.
    # Shards an earlier, interrupted run finished are not timed here.
    timed = [s["seconds"] for s in shards if "seconds" in s]
    worker_seconds = {k: round(sum(t[k] for t in timed), 3) for k in ("task", "encode")}
    log.info("packed %d documents, %d tokens (%s) in %d shards, %.0f tokens/s", documents, tokens, dtype.name,
             len(shards), tokens / max(seconds, 1e-9))
    return manifest.write(outputs=outputs, counts=counts, hashed=[e for s in shards for e in s.get("hashed", [])],
                          dtype=dtype.name, vocab_size=vocab_size, tokens_per_second=tokens / max(seconds, 1e-9),
                          worker_seconds=worker_seconds)
