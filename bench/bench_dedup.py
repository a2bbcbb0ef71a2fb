"""Memory and time of partitioned global dedup (data_pipeline/dedup_partitions.py) against K and key volume.

Synthetic unit files in the clean stage's key layout (exact_key uint64, bands: 14 x 8-byte band keys per
document, order) with 10% exact copies and 10% near copies (a third of the band keys shared). For each
volume (1x, 4x, 16x the documents) and K in 1, 2, 4, every partition task of both passes runs in a fresh
process, as a Slurm array task would. Measured per task: its peak RSS (ru_maxrss) less the process's RSS
after importing numpy and pyarrow and before reading any key (that baseline is the same for any input, and
is printed), and its wall time. A row gives the largest task's memory and the summed time of all tasks.

Run `python -m bench.bench_dedup` from the repo root; it writes the bench_dedup section of docs/BENCHMARKS.md
(`--smoke`: smaller volumes, prints, records nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import machine_description, markdown_table, publish

BANDS, UNITS = 14, 4
REPO = Path(__file__).resolve().parents[1]


def write_units(folder: Path, docs: int, seed: int = 0) -> list[Path]:
    """UNITS parquet files of `docs` documents in all, in the clean stage's key columns."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    exact = rng.integers(0, 2 ** 63, docs, dtype=np.uint64)
    bands = rng.integers(0, 2 ** 63, (docs, BANDS), dtype=np.uint64)
    copies = rng.choice(docs, docs // 10, replace=False)
    exact[copies] = exact[rng.integers(0, docs, len(copies))]
    near = rng.choice(docs, docs // 10, replace=False)
    sources = rng.integers(0, docs, len(near))
    bands[near, : BANDS // 3] = bands[sources, : BANDS // 3]
    order = rng.permutation(docs).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for unit, rows in enumerate(np.array_split(np.arange(docs), UNITS)):
        blob = bands[rows].astype("<u8").tobytes()
        offsets = (np.arange(len(rows) + 1, dtype=np.int32) * (BANDS * 8)).tobytes()
        column = pa.Array.from_buffers(pa.binary(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(blob)])
        table = pa.table({"exact_key": exact[rows], "bands": column, "order": order[rows]})
        paths.append(folder / f"unit-{unit:05d}.parquet")
        pq.write_table(table, paths[-1])
    return paths


TASK = """
import json, resource, sys, time
from pathlib import Path
import numpy, pyarrow, pyarrow.parquet
from triglot.data_pipeline.dedup_partitions import dedup_plan, run_partition
from types import SimpleNamespace
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
units, k, phase, p = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
base = rss()
plan = dedup_plan([Path(u) for u in units], SimpleNamespace(partitions=k, bands=14, exact=True, near=True))
t = time.perf_counter()
marker = run_partition(plan, phase, p, force=True)
print(json.dumps({"base_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": time.perf_counter() - t, "keys": marker["keys"], "dropped": marker["dropped"]}))
"""


def run_task(units: list[Path], k: int, phase: str, p: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", TASK, json.dumps([str(u) for u in units]), str(k), phase, str(p)],
                          capture_output=True, text=True, timeout=1200, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(docs: int, k: int, units: list[Path]) -> dict:
    tasks = {phase: [run_task(units, k, phase, p) for p in range(k)] for phase in ("exact", "near")}
    everything = [t for phase in tasks.values() for t in phase]
    import numpy as np

    folder = units[0].parent.parent / "dedup" / f"k{k:04d}"  # where dedup_plan puts the drop lists
    # A near copy can be dropped by several partitions (one per matching band bucket): count the union.
    dropped = np.unique(np.concatenate([np.load(f) for f in sorted(folder.glob("*.npy"))]))
    return {"docs": docs, "k": k,
            "exact_mib": max(t["peak_kib"] - t["base_kib"] for t in tasks["exact"]) / 1024,
            "near_mib": max(t["peak_kib"] - t["base_kib"] for t in tasks["near"]) / 1024,
            "base_mib": max(t["base_kib"] for t in everything) / 1024,
            "seconds": sum(t["seconds"] for t in everything),
            "near_keys": max(t["keys"] for t in tasks["near"]),
            "dropped": len(dropped), "dropped_hash": hash(dropped.tobytes())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="smaller volumes; print, record nothing")
    args = parser.parse_args(argv)
    base_docs = 50_000 if args.smoke else 250_000
    rows = []
    for scale in (1, 4, 16):
        docs = base_docs * scale
        with tempfile.TemporaryDirectory() as tmp:
            units = write_units(Path(tmp) / "units", docs, seed=scale)
            for k in (1, 2, 4):
                rows.append({"scale": scale, **measure(docs, k, units)})
                print(json.dumps(rows[-1]), flush=True)
    one = {r["scale"]: r for r in rows if r["k"] == 1}
    same = all(r["dropped_hash"] == one[r["scale"]]["dropped_hash"] for r in rows)
    per_doc = one[1]["seconds"] / one[1]["docs"]
    table = [[f"{r['scale']}x", f"{r['docs']:,}", r["k"], f"{r['near_keys']:,}", f"{r['exact_mib']:.1f}",
              f"{r['near_mib']:.1f}", f"{r['near_mib'] / one[r['scale']]['near_mib']:.2f}", f"{r['seconds']:.2f}",
              f"{r['seconds'] / r['docs'] / per_doc:.2f}" if r["k"] == 1 else "", f"{r['dropped']:,}"]
             for r in rows]
    body = "\n".join([
        "## Partitioned dedup memory (`bench/bench_dedup.py`)", "",
        f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.2f} at the end.", "",
        f"Synthetic keys in {UNITS} unit files ({BANDS} band keys a document, 10% exact and 10% near copies); "
        "every partition task of the exact and near passes in a fresh process. *Peak MiB*: the largest task's "
        "ru_maxrss less its RSS after imports and before reading keys (about "
        f"{max(r['base_mib'] for r in rows):.0f} MiB, the same for any input). *Near keys*: band keys the "
        "largest near task holds. *Seconds*: all tasks of both passes, summed (what one worker would take); "
        "*time / doc vs 1x*: K = 1 seconds per document against the 1x row (1.00 is linear).", "",
        markdown_table(["volume", "documents", "K", "near keys (largest task)", "exact peak MiB", "near peak MiB",
                        "near peak vs K=1", "seconds", "time / doc vs 1x", "dropped"], table), "",
        f"Dropped documents (the union of every task's drop list) {'are the same' if same else 'DIFFER'} for "
        "K = 1, 2 and 4 at each volume. Each task reads every unit's key columns whole before keeping its "
        "bucket's keys, so at these volumes the read buffers, not the held keys, set much of the peak.",
    ])
    publish("bench_dedup", body, [], record=not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
