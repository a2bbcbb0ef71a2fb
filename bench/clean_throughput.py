"""Clean-stage throughput: the full clean at 1, 2, ... workers, and triglot against datatrove on the same
documents at 1x, 2x and 4x the shared corpora (docs/s per core, documents kept, peak memory).

Used by bench/bench_clean.py (its Throughput subsection); `python -m bench.bench_clean --smoke` runs it small.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml
from triglot.data_pipeline.clean import run_clean_stage

from bench.report import goal, markdown_table, pyplot, savefig, versions
from triglot.config import compose

REPO = Path(__file__).resolve().parents[1]


def _input_bytes(sources: list[dict]) -> int:
    import glob

    os.chdir(REPO)
    return sum(os.path.getsize(p) for s in sources for pattern in s["paths"] for p in glob.glob(pattern))


def time_triglot(sources: list[dict], workers: int, out: Path, extra: dict | None = None) -> dict:
    cfg = compose({"run": {"dir": str(out)}, "data": {"sources": sources, **(extra or {})}})
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    manifest = run_clean_stage(cfg, force=True, workers=workers)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": _cpu_seconds() - cpu_before, "docs": manifest["counts"]["docs_in"],
            "kept": manifest["counts"]["kept"]}


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the worker processes)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _peak_rss_mib() -> float:
    """High-water resident memory of this process or its largest finished child, MiB."""
    import resource

    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def _xxhash_accepts_str() -> None:
    """xxhash 4 no longer hashes str; datatrove 0.10 passes str. Encode first (what datatrove would need to do)."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


def datatrove_quality_filters() -> list:
    """Gopher's repetition and quality rules that read any script: repeated lines and paragraphs; symbol,
    bullet and ellipsis ratios.

    The word-based rules (word count and length, stop words, share of alphabetic words, repeated word n-grams)
    assume space-separated words (datatrove's default English tokenizer): on Chinese and Cantonese text they
    drop all but a few dozen documents, leaving its dedup nothing to do, so they are off.
    """
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    return [GopherRepetitionFilter(top_n_grams=(), dup_n_grams=()),
            GopherQualityFilter(min_doc_words=None, max_doc_words=None, min_avg_word_length=None,
                                max_avg_word_length=None, max_non_alpha_words_ratio=None, min_stop_words=None)]


def time_datatrove(folder: Path, work: Path) -> dict:
    """datatrove's documented layout, each step once: read, quality-filter, write; then MinHash signatures,
    buckets, clusters, and the filtered documents read again, deduplicated and written (one task each)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    _xxhash_accepts_str()
    config = MinhashConfig()

    def run(pipeline: list, tasks: int = 1, name: str = "") -> None:
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / "logs" / name),
                              skip_completed=False).run()

    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    run([JsonlReader(str(folder)), *datatrove_quality_filters(), JsonlWriter(str(work / "filtered"))], name="quality")
    run([JsonlReader(str(work / "filtered")), MinhashDedupSignature(str(work / "sigs"), config=config)], name="sigs")
    run([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
        tasks=config.num_buckets, name="buckets")
    run([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)], name="cluster")
    run([JsonlReader(str(work / "filtered")), MinhashDedupFilter(str(work / "remove")), JsonlWriter(str(work / "out"))],
        name="dedup")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": _cpu_seconds() - cpu_before, "docs": _jsonl_docs(folder),
            "after_quality": _jsonl_docs(work / "filtered"), "kept": _jsonl_docs(work / "out")}


def _jsonl_docs(folder: Path) -> int:
    import gzip

    return sum(sum(1 for _ in (gzip.open(p, "rt") if p.suffix == ".gz" else open(p))) for p in folder.glob("*.jsonl*"))


# Sources both sides read: the JSONL and CSV corpora of configs/data/all.yaml (formats datatrove reads).
COMMON_FORMATS = ("jsonl", "csv")


def _source_texts(source: dict) -> list[str]:
    import csv
    import glob

    texts = []
    for path in sorted(p for pattern in source["paths"] for p in glob.glob(str(REPO / pattern))):
        if source.get("format", "jsonl") == "csv":
            with open(path, encoding="utf-8-sig", newline="") as fh:
                texts += [row.get(source.get("text_field", "text")) or "" for row in csv.DictReader(fh)]
        else:
            with open(path, encoding="utf-8") as fh:
                texts += [json.loads(line).get(source.get("text_field", "text")) or "" for line in fh if line.strip()]
    return [t for t in texts if t.strip()]


def _copy_text(text: str, copy: int) -> str:
    """Copy k of a text: ASCII letters rotated by k, Han characters moved k x 37 places in their block.

    Same lengths, scripts and layout, but no shingle in common with the original, so neither side's dedup
    removes a copy."""
    if copy == 0:
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if 0x61 <= o <= 0x7A or 0x41 <= o <= 0x5A:
            base = 0x61 if o >= 0x61 else 0x41
            o = base + (o - base + copy) % 26
        elif 0x4E00 <= o <= 0x9FFF:
            o = 0x4E00 + (o - 0x4E00 + copy * 37) % 0x5200
        out.append(chr(o))
    return "".join(out)


def write_common_input(sources: list[dict], folder: Path, copies: int, per_source: int | None) -> list[dict]:
    """The same documents for both sides: one JSONL file per source (and copy); triglot's sources for them."""
    folder.mkdir(parents=True, exist_ok=True)
    ours = []
    for s in sources:
        texts = _source_texts(s)[:per_source]
        for k in range(copies):
            path = folder / f"{s['name']}-{k}.jsonl"
            with open(path, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps({"id": f"{s['name']}-{k}-{i}", "text": _copy_text(t, k)}, ensure_ascii=False)
                              + "\n" for i, t in enumerate(texts))
            ours.append({"name": f"{s['name']}-{k}", "paths": [str(path)], "format": "jsonl",
                         **({"language": s["language"]} if "language" in s else {})})
    return ours


def _measure(side: str, args: tuple) -> dict:
    """One side in a fresh process, so that its peak memory is its own."""
    result = time_triglot(*args) if side == "triglot" else time_datatrove(*args)
    return {**result, "peak_mib": _peak_rss_mib()}


def measure_in_child(side: str, *args) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, side, args).result()


def plot_scaling(scaling: dict[int, dict], mb: float) -> str:
    """Throughput of the full clean against the number of workers, beside perfect scaling."""
    plt = pyplot()
    workers = sorted(scaling)
    measured = [mb / scaling[w]["seconds"] for w in workers]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(workers, [measured[0] * w for w in workers], ls="--", color="grey", label="linear in workers")
    ax.plot(workers, measured, marker="o", label="triglot data clean")
    for w, y in zip(workers, measured, strict=True):
        ax.annotate(f"{y:.2f} MB/s", (w, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xticks(workers)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"--workers (machine has {os.cpu_count()} cores)")
    ax.set_ylabel("input MB/s")
    ax.set_title("Full clean of configs/data/all.yaml")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = savefig(fig, "clean_workers.png")
    plt.close(fig)
    return path


def bench_throughput(tmp: Path, worker_counts: list[int], smoke: bool = False,
                     scales: tuple[int, ...] = (1, 2, 4), datatrove_scales: tuple[int, ...] = (1,)
                     ) -> tuple[str, list[dict]]:
    """The worker scaling, and both sides on the same documents at each scale (datatrove at `datatrove_scales`
    only: at 2x and 4x it would add about ten minutes on two cores; the comparison itself is at 1x)."""
    all_sources = yaml.safe_load((REPO / "configs/data/all.yaml").read_text())
    extra = {k: v for k, v in all_sources.items() if k not in ("sources", "workers")}
    sources = all_sources["sources"]
    mb = _input_bytes(sources) / 1e6
    scaling = {}
    for w in worker_counts if not smoke else []:
        scaling[w] = time_triglot(sources, w, tmp / f"w{w}", extra)
        print(f"triglot all sources, {w} worker(s): {scaling[w]}", flush=True)
    rows = [[f"triglot full clean, {w} worker(s)", r["docs"], f"{mb:.1f}", f"{r['seconds']:.1f}", f"{r['cpu']:.1f}",
             f"{r['docs'] / r['seconds'] / w:.0f}", f"{mb / r['seconds'] / w:.2f}"] for w, r in scaling.items()]
    goals = []
    if scaling:
        speedup = scaling[1]["seconds"] / scaling[2]["seconds"]
        goals.append(goal("clean: --workers 2 speed-up over --workers 1", speedup, 1.7, unit="x"))
    common = [s for s in sources if s.get("format", "jsonl") in COMMON_FORMATS and not s.get("text_fields")]
    same = {}
    for scale in (1,) if smoke else scales:
        folder = tmp / f"common-x{scale}"
        ours_sources = write_common_input(common, folder, scale, 2000 if smoke else None)
        folder_mb = sum(p.stat().st_size for p in folder.glob("*.jsonl")) / 1e6
        ours = measure_in_child("triglot", ours_sources, 1, tmp / f"triglot-x{scale}", extra)
        theirs = measure_in_child("datatrove", folder, tmp / f"datatrove-x{scale}") if scale in datatrove_scales \
            else None
        print(f"x{scale}: triglot {ours}, datatrove {theirs}", flush=True)
        same[scale] = (ours, theirs, folder_mb)
    return same_input_report(rows, same, goals, scaling, mb)


def same_input_report(rows: list, same: dict, goals: list, scaling: dict, mb: float) -> tuple[str, list[dict]]:
    ours, theirs, folder_mb = same[1]
    for scale, (o, t, m) in same.items():
        for name, r in ((f"triglot, same input x{scale}, 1 worker", o), (f"datatrove, same input x{scale}, 1 task", t)):
            if r is None:
                continue
            rows.append([name, r["docs"], f"{m:.1f}", f"{r['seconds']:.1f}", f"{r['cpu']:.1f}",
                         f"{r['docs'] / r['seconds']:.0f}", f"{m / r['seconds']:.2f}"])
    ratio = (ours["docs"] / ours["seconds"]) / (theirs["docs"] / theirs["seconds"])
    baseline = f"datatrove MinHash layout, one task ({versions('datatrove', 'spacy')})"
    goals.append(goal("clean: docs/s per core, triglot / datatrove, same documents", ratio, 1.0, unit="x",
                      baseline=baseline))
    scale_rows = [[f"x{k}", o["docs"], f"{o['docs'] / o['seconds']:.0f}", f"{o['peak_mib']:.0f}", o["kept"],
                   *([f"{t['docs'] / t['seconds']:.0f}", f"{t['peak_mib']:.0f}", t["kept"]] if t else ["not run"] * 3)]
                  for k, (o, t, _) in same.items()]
    table = markdown_table(["run", "docs in", "input MB", "wall s", "CPU s", "docs/s per core", "MB/s per core"], rows)
    lines = [table, ""]
    if scaling:
        lines.append(f"- `--workers 2` speedup over `--workers 1`: **{goals[0]['value']:.2f}x** (goal >= 1.7x: "
                     f"{'met' if goals[0]['met'] else 'NOT met'}).")
    lines += [
        f"- Same documents ({ours['docs']} in on both sides, {folder_mb:.1f} MB: the JSONL and CSV corpora written "
        f"once as JSONL), docs/s per core triglot / datatrove: **{ratio:.2f}x** (goal >= 1.0x: "
        f"{'met' if ratio >= 1 else 'not met'}); by CPU time {theirs['cpu'] / ours['cpu']:.2f}x. Kept: triglot "
        f"{ours['kept']}, datatrove {theirs['kept']} ({theirs['after_quality']} after its quality filters). "
        f"Baseline: {baseline}: `JsonlReader`, `GopherRepetitionFilter` and `GopherQualityFilter` (the rules "
        "that read any script: repeated lines and paragraphs, symbol, bullet and ellipsis ratios; the word-based "
        "ones assume space-separated words and would keep a few dozen Chinese documents), `JsonlWriter`; then `MinhashDedupSignature` (5-grams, 14 x 8), "
        "`MinhashDedupBuckets`, `MinhashDedupCluster`, `MinhashDedupFilter`, `JsonlWriter`, as in datatrove's "
        "examples/minhash_deduplication.py. triglot also normalises, identifies language and variety, runs "
        "CJK-aware filters, scrubs PII, dedups exactly and by MinHash, and writes parquet plus a report.",
        "- Growth with the input (the same corpora repeated; copy k has its ASCII letters rotated by k and its Han "
        "characters moved k x 37 places, so no copy is a duplicate of another): docs/s should stay flat and peak "
        "memory (resident, of the process or its largest worker) bounded. datatrove runs at "
        f"{', '.join(f'x{k}' for k, (_, t, _) in same.items() if t)} only (at x2 and x4 it would add about ten "
        "minutes to the run).", "",
        markdown_table(["input", "docs in", "triglot docs/s", "triglot peak MiB", "triglot kept", "datatrove docs/s",
                        "datatrove peak MiB", "datatrove kept"], scale_rows), "",
        f"- Load average after measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())}. "
        "The wall-time speedup needs the cores free, so it is only meaningful on an otherwise idle machine."]
    if scaling:
        lines += ["", f"![clean throughput against workers]({plot_scaling(scaling, mb)})"]
    return "\n".join(lines), goals
