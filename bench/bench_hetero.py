"""`train.micro_batch_sizes: auto` against an even split, on two CPU ranks made unequal by a busy neighbour.

How the ranks differ (real, not simulated): under torchrun each rank pins itself to one CPU with one intra-op
thread before torch loads, rank 0 on CPU 0 and rank 1 on CPU 1, and for the whole bench a busy process (a
spinning Python loop) is pinned to CPU 1 too, so the kernel gives rank 1 about half a core against rank 0's
whole one. Training itself is untouched: both rows run the same `triglot train` on the same data, the even row
with train.micro_batch_sizes = [4, 4], the auto row with `auto` (calibration at start, with the neighbour
running, then the split it chose). Reported: tokens/s of each (timed from the end of a warm-up step, so
calibration is excluded), the ratio, the chosen split, and the largest loss difference step by step (the loss is
normalised by global tokens, so the curves agree up to float summation order).

Run `python -m bench.bench_hetero` from the repo root; it writes the bench_hetero section of docs/BENCHMARKS.md
(`--smoke`: a few steps; prints, records nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.report import goal, machine_description, markdown_table, publish, versions
from triglot.testing import run_torchrun, write_synthetic_pack

SEQ_LEN, GLOBAL_BATCH, EVEN = 128, 8, [4, 4]
VOCAB = 8000
MODEL = {"hidden_size": 256, "intermediate_size": 704, "num_layers": 4, "num_heads": 4, "num_kv_heads": 4}
# rank -> (CPUs it may run on, intra-op threads)
RANK_CPUS = {0: ({0}, 1), 1: ({1}, 1)}
BUSY_CPU = 1  # where the busy neighbour runs
STEPS, WARMUP = 40, 8
SMOKE_STEPS, SMOKE_WARMUP = 12, 4
GOAL = 1.3


def experiment(path: Path, run_dir: Path, data: Path, steps: int, sizes) -> Path:
    train = {"steps": steps, "seq_len": SEQ_LEN, "global_batch_size": GLOBAL_BATCH, "micro_batch_size": 4,
             "micro_batch_sizes": sizes, "lr": 1e-3, "warmup_steps": 2, "zero_stage": 2, "data_dir": str(data),
             "val_every": 0, "checkpoint": {"every": 0, "export_hf": False}}
    config = {"defaults": {"model": "tiny", "hardware": "cpu"}, "run": {"name": "bench", "dir": str(run_dir)},
              "model": MODEL, "tracking": {"mode": "disabled"}, "train": train}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def rank_worker(config: str) -> None:
    """Under torchrun: this rank's CPUs and threads, then `triglot train CONFIG` in this process."""
    import runpy

    cpus, threads = RANK_CPUS[int(os.environ["LOCAL_RANK"])]
    available = os.sched_getaffinity(0)
    os.sched_setaffinity(0, (cpus & available) or available)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    sys.argv = ["triglot", "train", config]
    runpy.run_module("triglot", run_name="__main__", alter_sys=True)


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def run(name: str, sizes, data: Path, work: Path, steps: int, warmup: int) -> dict:
    exp = experiment(work / f"{name}.yaml", work / name, data, steps, sizes)
    run_torchrun(2, ["--rank-worker", str(exp)], script=__file__, timeout=1800)
    rows = records(work / name)
    times = {r["step"]: r["time"] for r in rows}
    tokens = (steps - warmup) * GLOBAL_BATCH * SEQ_LEN
    last = rows[-1]
    return {"tokens_per_s": tokens / (times[steps] - times[warmup]), "loss": [r["loss"] for r in rows],
            "split": [int(last.get(f"micro_batch/rank{r}", 0)) for r in range(2)],
            "step_time": [float(last.get(f"step_time_s/rank{r}", 0.0)) for r in range(2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps; prints, records nothing")
    parser.add_argument("--rank-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_worker:
        rank_worker(args.rank_worker)
        return
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench_hetero needs 2 CPUs (rank 0 on CPU 0, rank 1 and a busy process on CPU 1)")
    steps, warmup = (SMOKE_STEPS, SMOKE_WARMUP) if args.smoke else (STEPS, WARMUP)
    spin = f"import os\nos.sched_setaffinity(0, {{{BUSY_CPU}}})\nwhile True:\n    pass\n"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data = write_synthetic_pack(work / "data", vocab_size=VOCAB, docs=600, seed=3)
            even = run("even", EVEN, data, work, steps, warmup)
            print(f"even split {even['split']}: {even['tokens_per_s']:,.0f} tokens/s", flush=True)
            auto = run("auto", "auto", data, work, steps, warmup)
            print(f"auto split {auto['split']}: {auto['tokens_per_s']:,.0f} tokens/s", flush=True)
    finally:
        neighbour.kill()
        neighbour.wait()
    ratio = auto["tokens_per_s"] / even["tokens_per_s"]
    loss_diff = max(abs(a - b) for a, b in zip(even["loss"], auto["loss"], strict=True))
    rows = [[name, f"{r['split']}", f"{r['tokens_per_s']:,.0f}",
             " / ".join(f"{t * 1000:.0f}" for t in r["step_time"]), f"{r['loss'][-1]:.4f}"]
            for name, r in (("even split", even), ("auto", auto))]
    body = (
        f"Two CPU ranks made unequal by a busy neighbour: rank 0 runs {RANK_CPUS[0][1]} thread on CPU "
        f"{sorted(RANK_CPUS[0][0])}, rank 1 runs {RANK_CPUS[1][1]} thread on CPU {sorted(RANK_CPUS[1][0])}, which "
        f"it shares with a spinning Python process pinned to CPU {BUSY_CPU} for the whole bench (affinity and "
        "thread count set per rank before torch loads; nothing in training is slowed on purpose). Both runs: the "
        "same `triglot train`, "
        f"model {MODEL['num_layers']} layers x {MODEL['hidden_size']}, seq_len {SEQ_LEN}, global batch "
        f"{GLOBAL_BATCH}, ZeRO-2, fp32, {steps} steps timed from step {warmup} (auto's calibration excluded).\n\n"
        + markdown_table(["split", "micro-batches (rank 0, rank 1)", "tokens/s", "step time ms (rank 0 / rank 1)",
                          "final loss"], rows)
        + f"\n\nauto / even tokens/s: {ratio:.2f}x; largest loss difference over the {steps} steps: {loss_diff:.2e}."
        + f"\n\nMachine: {machine_description()}; {versions('torch', 'deepspeed')}."
    )
    goals = [goal("tokens/s, micro_batch_sizes=auto over an even split (one CPU rank shares its core with a busy process)", ratio, GOAL,
                  unit="x", baseline="even split [4, 4], same triglot")]
    publish("bench_hetero", body, goals, record=not args.smoke)


if __name__ == "__main__":
    main()
