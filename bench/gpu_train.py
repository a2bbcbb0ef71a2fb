"""GPU training throughput: `triglot train` on a ~1B Llama at sequence length 4096 in bf16, against a
minimal plain-PyTorch loop on the same model, reporting tokens/s and MFU (needs one NVIDIA/AMD GPU).

    python -m bench.gpu_train [--steps 30] [--micro 2] [--global-batch 16]

Each variant runs in its own process; results go to the `gpu_train` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import goal, machine_description, markdown_table, record_goals, update_section
from triglot.config import compose, load_config
from triglot.packed import ShardWriter, token_dtype, write_meta

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiments" / "quickstart.yaml"
VOCAB = 32000
WARMUP_STEPS = 5  # excluded from the averages (compilation, allocator warmup)


def synthetic_packed(folder: Path, tokens: int, seed: int = 0) -> Path:
    """Random documents of 256..8192 tokens: throughput does not depend on the text."""
    rng = np.random.default_rng(seed)
    writer = ShardWriter(folder, "shard-00000", token_dtype(VOCAB))
    written = 0
    while written < tokens:
        n = int(rng.integers(256, 8192))
        writer.add(np.append(rng.integers(3, VOCAB, n - 1), 2), language="en", source="synthetic", doc_id=str(written))
        written += n
    write_meta(folder, dtype=token_dtype(VOCAB), vocab_size=VOCAB, eos_id=2, shards=[writer.close()])
    return folder


def triglot_variant(args: argparse.Namespace, name: str, overrides: list[str], data: Path, work: Path) -> dict:
    """`triglot train` through torchrun on one GPU; tokens/s and MFU from its metrics.jsonl."""
    run_dir = work / name
    from triglot.launch.torchrun import TORCHRUN, torchrun_argv, triglot_target

    cmd = torchrun_argv(1, triglot_target([
           "train", str(EXPERIMENT), f"model={args.model}", "hardware=auto", f"run.dir={run_dir}", f"train.data_dir={data}",
           f"train.seq_len={args.seq_len}", f"train.global_batch_size={args.global_batch}",
           f"train.micro_batch_size={args.micro}", f"train.steps={args.steps}", "train.zero_stage=1",
           "train.warmup_steps=2", "train.val_every=0", "train.val_fraction=0", "train.checkpoint.every=1000000",
           "train.checkpoint.export_hf=false", "tracking.mode=disabled", f"model.max_seq_len={args.seq_len}",
           *overrides]), launcher=TORCHRUN)
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"variant": name, "error": proc.stderr[-2000:]}
    rows = [json.loads(line) for line in (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in rows if "tokens_per_s" in r and r.get("step", 0) > WARMUP_STEPS]
    return {"variant": name, "tokens_per_s": float(np.mean([r["tokens_per_s"] for r in steady])),
            "mfu": float(np.mean([r["mfu"] for r in steady])), "wall_s": time.time() - started,
            "memory_gb": max(r.get("memory_gb", 0) for r in steady)}


def plain_loop(args: argparse.Namespace, compile_model: bool) -> dict:
    """Baseline: LlamaForCausalLM, bf16 autocast, fused AdamW, flash SDPA, no DeepSpeed, no packing masks."""
    import torch
    from triglot.train.model import flops_per_token, llama_config

    from triglot.hardware import device_for, peak_flops, synchronize

    cfg = compose({"defaults": {"model": args.model, "hardware": "auto"}, "model": {"max_seq_len": args.seq_len}})
    device = device_for(0)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(llama_config(cfg.model, VOCAB, "sdpa"), dtype=torch.float32).to(device)
    if compile_model:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    accumulation = args.global_batch // args.micro
    tokens_per_step = args.global_batch * args.seq_len
    times = []
    for step in range(args.steps):
        start = time.perf_counter()
        for _ in range(accumulation):
            ids = torch.randint(3, VOCAB, (args.micro, args.seq_len), device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss / accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        if step >= WARMUP_STEPS:
            times.append(time.perf_counter() - start)
    tps = tokens_per_step / float(np.mean(times))
    mfu = tps * flops_per_token(cfg.model, VOCAB, args.seq_len) / peak_flops(cfg.hardware)
    return {"variant": f"plain PyTorch loop{' + compile' if compile_model else ''}", "tokens_per_s": tps, "mfu": mfu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--baseline-only", action="store_true")
    parser.add_argument("--model", default="1b", help="model config (a smaller one for a smoke run)")
    parser.add_argument("--smoke-on-cpu", action="store_true", help="run on CPU to check the script, not to measure")
    args = parser.parse_args()

    from triglot.hardware import detect

    device = detect()
    if device.accelerator == "cpu" and not args.smoke_on_cpu:
        print("bench.gpu_train needs a GPU; this machine has none (docs/BENCHMARKS.md left as it is)")
        return 2
    hardware = load_config(EXPERIMENT, ["hardware=auto"]).hardware
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = synthetic_packed(work / "packed", args.steps * args.global_batch * args.seq_len * 2)
        if not args.baseline_only:
            for name, overrides in (
                ("triglot train", []),
                ("triglot train + compile", ["hardware.compile=true"]),
                ("triglot train + compile + activation checkpointing",
                 ["hardware.compile=true", "hardware.activation_checkpointing=true"]),
            ):
                results.append(triglot_variant(args, name, overrides, data, work))
                print(json.dumps(results[-1]), flush=True)
        for compile_model in (False, True):
            results.append(plain_loop(args, compile_model))
            print(json.dumps(results[-1]), flush=True)

    baseline = max((r["tokens_per_s"] for r in results if r["variant"].startswith("plain")), default=0.0)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["variant"], "failed", "", "", r["error"].splitlines()[-1][:120]])
            continue
        ratio = r["tokens_per_s"] / baseline if baseline else 0.0
        rows.append([r["variant"], f"{r['tokens_per_s']:,.0f}", f"{100 * r['mfu']:.1f}%", f"{ratio:.2f}",
                     "met" if r["mfu"] >= 0.45 else "not met"])
    body = "\n".join([
        f"## GPU training throughput ({args.model} Llama, seq {args.seq_len}, {hardware.precision.value}, one device)",
        "",
        f"Machine: {machine_description()}; profile `{hardware.name}` "
        f"(peak {hardware.peak_tflops.get('bf16', 0):g} TFLOP/s bf16, dense).",
        f"Global batch {args.global_batch} x {args.seq_len} tokens, micro-batch {args.micro}, {args.steps} steps, "
        f"first {WARMUP_STEPS} excluded. Ratio: tokens/s against the fastest plain PyTorch loop. Goal: MFU >= 45%.",
        "",
        markdown_table(["variant", "tokens/s", "MFU", "ratio", "MFU goal"], rows),
        "",
        f"Driver and device as reported by nvidia-smi; device product: {device.product}.",
    ])
    print(body)
    if device.accelerator != "cpu":
        update_section("gpu_train", body)
        measured = [r for r in results if "error" not in r and not r["variant"].startswith("plain")]
        if measured and baseline:
            best = max(measured, key=lambda r: r["tokens_per_s"])
            record_goals("gpu_train", [goal(f"GPU: MFU of {best['variant']}, {args.model} seq {args.seq_len}",
                                            100 * best["mfu"], 45, unit="%"),
                                       goal("GPU: tokens/s of triglot train / plain PyTorch loop",
                                            best["tokens_per_s"] / baseline, 0.9)])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
