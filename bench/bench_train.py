"""Training throughput against a hand-written DDP loop, and memory per rank under each ZeRO stage.

Run `python -m bench.bench_train` from the repo root; it updates the bench_train section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.report import goal, machine_description, markdown_table, pyplot, record_goals, savefig, update_section
from triglot.testing import run_torchrun, write_synthetic_pack

STEPS, WARMUP, ROUNDS = 120, 20, 3  # short runs on a shared VM vary by 30%: time 100 steps
SEQ_LEN, GLOBAL_BATCH, MICRO = 256, 8, 4
VOCAB = 8000
ZERO_STAGES = (0, 1, 2, 3)
MEMORY_MODEL = {"hidden_size": 256, "intermediate_size": 704, "num_layers": 4, "num_heads": 4, "num_kv_heads": 4}


def experiment(path: Path, run_dir: Path, data: Path, **overrides) -> Path:
    train = {"steps": STEPS, "seq_len": SEQ_LEN, "global_batch_size": GLOBAL_BATCH, "micro_batch_size": MICRO,
             "lr": 1e-3, "warmup_steps": 5, "zero_stage": 2, "data_dir": str(data),
             "checkpoint": {"every": 0, "export_hf": False}}
    config = {"defaults": {"model": "tiny", "hardware": "cpu"}, "run": {"name": "bench", "dir": str(run_dir)},
              "tracking": {"mode": "disabled"}, "train": train}
    for key, value in overrides.items():
        config.setdefault(key, {}).update(value)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# ---- worker modes (run under torchrun) ---------------------------------------------------------


def ddp_worker(config: str, out: str, tune_allocator: bool = False) -> None:
    """The baseline: plain DDP over gloo, same model, same samples, mean loss, AdamW, clipping.

    With `tune_allocator`, the host allocator settings triglot applies on CPU ranks, for comparison.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel
    from triglot.train.data import MixtureSampler, collate, split_documents
    from triglot.train.engine import batch_layout
    from triglot.train.model import build_model

    from triglot.config import load_config
    from triglot.packed import PackedDataset

    cfg = load_config(config)
    if tune_allocator:
        from triglot.hardware import tune_host_allocator

        tune_host_allocator()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    packed = PackedDataset(cfg.train.data_dir)
    docs, _ = split_documents(packed, 0.0, cfg.run.seed)
    sampler = MixtureSampler(packed, docs, cfg.train.seq_len, cfg.run.seed, {}, "language")
    layout = batch_layout(cfg.train, cfg.hardware, world)
    model = DistributedDataParallel(build_model(cfg, packed.vocab_size))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=(0.9, 0.95), weight_decay=0.1)
    tokens, start = 0, 0.0
    for step in range(cfg.train.steps):
        if step == WARMUP:
            dist.barrier()
            start, tokens = time.perf_counter(), 0
        batch = collate([sampler[i] for i in layout.indices(step, rank)[0]])
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=-100)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        tokens += batch["input_ids"].numel() * world
    dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps({"tokens_per_s": tokens / (time.perf_counter() - start)}))


def state_bytes(engine) -> int:
    """Bytes of parameters and optimizer state held by this rank (shared storage counted once)."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            return
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()

    for p in engine.module.parameters():
        add(p.ds_tensor if hasattr(p, "ds_tensor") else p.data)
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for group in inner.param_groups:
        for p in group["params"]:
            add(p)
    for state in inner.state.values():
        for value in state.values():
            add(value)
    return total


def memory_worker(config: str, out: str) -> None:
    """One real optimizer step under the configured ZeRO stage, then the state bytes of each rank."""
    import torch.distributed as dist
    from triglot.train.data import collate
    from triglot.train.engine import init_distributed
    from triglot.train.trainer import Trainer, resolve_inputs

    from triglot.config import load_config
    from triglot.dist import read_dist_env

    cfg = load_config(config)
    init_distributed(cfg, read_dist_env())
    trainer = Trainer(cfg, *resolve_inputs(cfg))
    groups = trainer.layout.indices(0, trainer.rank)
    trainer.train_step(1, [collate([trainer.sampler[i] for i in g]) for g in groups])
    sizes = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, state_bytes(trainer.engine))
    if trainer.rank == 0:
        Path(out).write_text(json.dumps({"bytes_per_rank": sizes}))


# ---- the benchmark -----------------------------------------------------------------------------


def triglot_tokens_per_s(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in records if "loss" in r}
    first, last = steps[WARMUP], steps[STEPS]
    tokens = (STEPS - WARMUP) * GLOBAL_BATCH * SEQ_LEN
    return tokens / (last["time"] - first["time"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_synthetic_pack(tmp / "packed", vocab_size=VOCAB, docs=3000, min_len=50, max_len=800)
        # Alternate the two a few times and keep each one's best, so a busy moment on a shared
        # machine does not decide the ratio.
        ours, ddp, ddp_tuned = 0.0, 0.0, 0.0
        for i in range(ROUNDS):
            exp = experiment(tmp / f"train{i}.yaml", tmp / f"run{i}", data)
            run_torchrun(2, ["train", str(exp)], timeout=900)
            ours = max(ours, triglot_tokens_per_s(tmp / f"run{i}"))
            run_torchrun(2, ["--ddp-worker", str(exp), str(tmp / "ddp.json")], script=__file__, timeout=900)
            ddp = max(ddp, json.loads((tmp / "ddp.json").read_text())["tokens_per_s"])
            run_torchrun(2, ["--ddp-worker", str(exp), str(tmp / "ddp.json"), "--tune-allocator"], script=__file__,
                         timeout=900)
            ddp_tuned = max(ddp_tuned, json.loads((tmp / "ddp.json").read_text())["tokens_per_s"])
        memory = {}
        for stage in ZERO_STAGES:
            mexp = experiment(tmp / f"mem{stage}.yaml", tmp / f"mem{stage}", data, model=MEMORY_MODEL,
                              train={"zero_stage": stage, "steps": 1})
            run_torchrun(2, ["--memory-worker", str(mexp), str(tmp / f"mem{stage}.json")], script=__file__,
                         timeout=900)
            memory[stage] = json.loads((tmp / f"mem{stage}.json").read_text())["bytes_per_rank"]
    report(ours, ddp, ddp_tuned, memory)


def plot_memory(memory: dict[int, list[int]]) -> str:
    """Parameters and optimizer state per rank under each ZeRO stage, one bar per rank."""
    plt = pyplot()
    stages = sorted(memory)
    ranks = len(memory[stages[0]])
    width = 0.8 / ranks
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for rank in range(ranks):
        xs = [i + (rank - (ranks - 1) / 2) * width for i in range(len(stages))]
        ax.bar(xs, [memory[s][rank] / 2**20 for s in stages], width, label=f"rank {rank}")
    ax.set_xticks(range(len(stages)), [f"ZeRO-{s}" for s in stages])
    ax.set_ylabel("parameters + optimizer state (MiB)")
    ax.set_title(f"Per-rank state, {ranks} ranks, fp32, AdamW")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    path = savefig(fig, "zero_memory.png")
    plt.close(fig)
    return path


def report(ours: float, ddp: float, ddp_tuned: float, memory: dict) -> None:
    goals = [goal("train: tokens/s of triglot train / hand-written DDP loop", ours / ddp, 0.9),
             goal("train: per-rank memory ZeRO-3 / ZeRO-0", max(memory[3]) / max(memory[0]), 0.6, at_most=True)]
    rows = [
        ["tokens/s, triglot train (ZeRO-2, 2 ranks, fp32, tiny)", f"{ours:,.0f}", ""],
        ["tokens/s, hand-written DDP loop (same model, data, batch)", f"{ddp:,.0f}", ""],
        ["throughput ratio (goal >= 0.9)", f"{goals[0]['value']:.3f}", "met" if goals[0]["met"] else "NOT met"],
        ["tokens/s, the DDP loop with triglot's host allocator settings", f"{ddp_tuned:,.0f}", ""],
        ["throughput ratio against that loop", f"{ours / ddp_tuned:.3f}", ""],
        *([f"params + optimizer per rank, ZeRO-{stage} (MiB)", f"{max(memory[stage]) / 2**20:.2f}", ""]
          for stage in sorted(memory)),
        ["memory ratio ZeRO-3 / ZeRO-0 (goal <= 0.6)", f"{goals[1]['value']:.3f}", "met" if goals[1]["met"] else "NOT met"],
    ]
    body = "\n".join([
        "## Training (`bench/bench_train.py`)", "",
        f"Machine: {machine_description()}", "",
        f"Throughput: {STEPS} steps of global batch {GLOBAL_BATCH} x {SEQ_LEN} tokens, timed from step {WARMUP}, "
        f"best of {ROUNDS} alternating runs each "
        "(wall clock of the whole loop for triglot, including metrics and the per-step all-reduces). "
        "On CPU ranks triglot keeps freed host memory in the process (glibc `mallopt`, see "
        "`triglot.hardware.tune_host_allocator`); with glibc's defaults each step faults its buffers in again. "
        "The plain loop is measured as written and once more with the same allocator settings. "
        "Memory: bytes of parameters and optimizer state each rank holds after one step, model "
        f"{MEMORY_MODEL['hidden_size']} wide x {MEMORY_MODEL['num_layers']} layers, vocabulary {VOCAB}. "
        "ZeRO-1 and -2 shard the optimizer state (ZeRO-2 also the gradients, which are freed after the step and "
        "not counted), ZeRO-3 the parameters too. DeepSpeed's ZeRO-1/2 optimizer keeps its own flat fp32 "
        "partition of the weights even in fp32 training, so they hold 2.5x the parameter bytes, not 2x.", "",
        markdown_table(["measure", "value", "goal"], rows), "",
        f"![memory by ZeRO stage]({plot_memory(memory)})",
    ])
    update_section("bench_train", body)
    record_goals("bench_train", goals)
    print(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddp-worker", nargs=2, metavar=("CONFIG", "OUT"))
    parser.add_argument("--memory-worker", nargs=2, metavar=("CONFIG", "OUT"))
    parser.add_argument("--tune-allocator", action="store_true", help="with --ddp-worker: triglot's allocator settings")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if args.ddp_worker:
        ddp_worker(*args.ddp_worker, tune_allocator=args.tune_allocator)
    elif args.memory_worker:
        memory_worker(*args.memory_worker)
    else:
        main()
    sys.exit(0)
