"""GPU training throughput: `triglot train` on a ~1B Llama at sequence length 4096 in bf16 on one device, its MFU
against the profile's peak, and tokens/s against a plain PyTorch loop and HF Trainer with DeepSpeed doing the same work.

    python -m bench.gpu_train [--steps 30] [--micro 2] [--global-batch 16] [--only triglot,plain,hf]
    python -m bench.gpu_train --smoke-on-cpu       # tiny model on CPU: checks the script, measures nothing

Every row reads the same packed documents (document masking by position ids), uses the same experiment file
(model, batch, precision, optimizer, schedule, clipping, DeepSpeed config) and the same clock: tokens over the
wall time of the same steps, from the end of the warm-up steps to the end of the last, data wait included.
The baselines are bench/bench_train.py's workers. Results go to the `gpu_train` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from bench.report import goal, machine_description, markdown_table, publish, versions
from triglot.config import load_config
from triglot.packed import ShardWriter, token_dtype, write_meta

BENCH_TRAIN = str(Path(__file__).resolve().with_name("bench_train.py"))
VOCAB = 32000
MFU_GOAL = 0.45


def synthetic_packed(folder: Path, tokens: int, max_doc: int, seed: int = 0) -> Path:
    """Random documents of 256..max_doc tokens: throughput does not depend on the text."""
    rng = np.random.default_rng(seed)
    writer = ShardWriter(folder, "shard-00000", token_dtype(VOCAB))
    written = 0
    while written < tokens:
        n = int(rng.integers(min(256, max_doc // 2), max_doc))
        writer.add(np.append(rng.integers(3, VOCAB, n - 1), 2), language="en", source="synthetic", doc_id=str(written))
        written += n
    write_meta(folder, dtype=token_dtype(VOCAB), vocab_size=VOCAB, eos_id=2, shards=[writer.close()])
    return folder


def experiment(args: argparse.Namespace, data: Path, run_dir: Path, hardware: dict) -> Path:
    """The one experiment file every row runs (triglot itself, and the baselines through load_config)."""
    config = {"defaults": {"model": args.model, "hardware": "cpu" if args.smoke_on_cpu else "auto"},
              "run": {"name": "gpu-bench", "dir": str(run_dir)}, "tracking": {"mode": "disabled"},
              "model": {"max_seq_len": args.seq_len},
              "hardware": hardware,
              "train": {"steps": args.steps, "seq_len": args.seq_len, "global_batch_size": args.global_batch,
                        "micro_batch_size": args.micro, "lr": 3e-4, "warmup_steps": 2, "zero_stage": 1,
                        "data_dir": str(data), "val_every": 0, "checkpoint": {"every": 0, "export_hf": False}}}
    path = run_dir.with_suffix(".yaml")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_row(args: argparse.Namespace, name: str, mode: str, data: Path, work: Path, hardware: dict) -> dict:
    """One row in its own torchrun process on one device; tokens/s by the shared clock."""
    from bench.bench_train import triglot_tokens_per_s

    slug = "".join(c if c.isalnum() else "-" for c in name)
    exp = experiment(args, data, work / slug, hardware)
    env = {"BENCH_WARMUP": str(args.warmup)}
    try:
        if mode == "triglot":
            torchrun(["train", str(exp)], None, env, args.timeout)
            tps = triglot_tokens_per_s(work / slug, args.steps, args.warmup, args.global_batch * args.seq_len)
        else:
            out = work / f"{slug}.json"
            torchrun([mode, str(exp), str(out)], BENCH_TRAIN, env, args.timeout)
            tps = json.loads(out.read_text())["tokens_per_s"]
    except (RuntimeError, OSError, KeyError, ValueError, subprocess.TimeoutExpired) as err:
        return {"variant": name, "error": str(err)[-2000:]}
    return {"variant": name, "tokens_per_s": tps, "mfu": mfu(exp, tps, args.seq_len)}


def torchrun(argv: list[str], script: str | None, env: dict[str, str], timeout: int) -> None:
    """torchrun with one process, in this environment (the device left to DeepSpeed's detection)."""
    from triglot.testing import REPO_ROOT, torchrun_argv

    full = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
            "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.run(torchrun_argv(1, argv, script), cwd=REPO_ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}")


def mfu(exp: Path, tokens_per_s: float, seq_len: int) -> float:
    from triglot.train.model import flops_per_token

    from triglot.hardware import peak_flops

    cfg = load_config(str(exp))
    peak = peak_flops(cfg.hardware)
    return tokens_per_s * flops_per_token(cfg.model, VOCAB, seq_len) / peak if peak else 0.0


# (key for --only, variant, how it runs, hardware settings): the profile's attention (SDPA) unless a row says
# otherwise; FlexAttention turns the packed documents' mask into a block-sparse one that skips masked tiles.
FLEX = {"attention": "flex_attention"}
ROWS = (("triglot", "triglot train", "triglot", {}),
        ("plain", "plain PyTorch loop (DDP, bf16 autocast, fused AdamW)", "--ddp-worker", {}),
        ("hf", "HF Trainer + DeepSpeed (same DeepSpeed config)", "--hf-worker", {}),
        ("triglot-flex", "triglot train, FlexAttention", "triglot", FLEX),
        ("plain-flex", "plain PyTorch loop, FlexAttention", "--ddp-worker", FLEX),
        ("triglot-compile", "triglot train + compile", "triglot", {"compile": True}),
        ("plain-compile", "plain PyTorch loop + compile", "--ddp-worker", {"compile": True}))


def report(args: argparse.Namespace, results: list[dict], hardware, product: str, record: bool) -> None:
    ok = [r for r in results if "error" not in r]
    best = {kind: max((r for r in ok if r["variant"].startswith(kind)), key=lambda r: r["tokens_per_s"], default=None)
            for kind in ("triglot", "plain", "HF")}
    rows = [[r["variant"], "failed", "", r["error"].strip().splitlines()[-1][:120]] if "error" in r else
            [r["variant"], f"{r['tokens_per_s']:,.0f}", f"{100 * r['mfu']:.1f}%",
             f"{best['triglot']['tokens_per_s'] / r['tokens_per_s']:.3f}" if best["triglot"] else ""]
            for r in results]
    goals = []
    if best["triglot"]:
        ours = best["triglot"]
        goals.append(goal(f"GPU: MFU of {ours['variant']}, {args.model} seq {args.seq_len}", 100 * ours["mfu"],
                          100 * MFU_GOAL, unit="%", baseline=f"profile peak {hardware.name}"))
        for kind, target, base in (("plain", 0.95, f"plain PyTorch loop ({versions('torch')})"),
                                   ("HF", 1.0, f"HF Trainer + DeepSpeed ({versions('transformers', 'deepspeed')})")):
            if best[kind]:
                goals.append(goal(f"GPU: tokens/s best triglot / best {base.split(' (')[0]}",
                                  ours["tokens_per_s"] / best[kind]["tokens_per_s"], target, baseline=base))
    body = "\n".join([
        f"## GPU training throughput ({args.model} Llama, seq {args.seq_len}, "
        f"{getattr(hardware.precision, 'value', hardware.precision)}, one device)", "",
        f"Machine: {machine_description()}; device {product}; profile `{hardware.name}` "
        f"(peak {hardware.peak_tflops.get('bf16', 0):g} TFLOP/s bf16, dense).", "",
        f"Global batch {args.global_batch} x {args.seq_len} tokens, micro-batch {args.micro}, {args.steps} steps, "
        f"timed from the end of step {args.warmup} to the end of the last (tokens over wall time, data wait "
        "included) for every row; the same packed documents with document masking; MFU against the profile's "
        f"peak (goal >= {100 * MFU_GOAL:.0f}%).", "",
        markdown_table(["variant", "tokens/s", "MFU", "best triglot / this"], rows),
    ])
    publish("gpu_train", body, goals, record=record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps before the clock starts (compile, allocator)")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--model", default="1b", help="model config (a smaller one for a smoke run)")
    parser.add_argument("--only", default=",".join(key for key, *_ in ROWS),
                        help="comma-separated rows to run, in this order (default: all): "
                             + ", ".join(key for key, *_ in ROWS))
    parser.add_argument("--smoke-on-cpu", action="store_true",
                        help="tiny model, 6 steps of 2 x 256 on CPU: checks the script, records nothing")
    args = parser.parse_args()
    keys = {key: (name, mode, hardware) for key, name, mode, hardware in ROWS}
    only = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in only if key not in keys]
    if unknown or not only:
        parser.error(f"--only: unknown row {', '.join(unknown) or '(none given)'}; choose from {', '.join(keys)}")
    from triglot.hardware import detect

    device = detect()
    if args.smoke_on_cpu:
        os.environ.update({"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"})
        args.model, args.seq_len, args.micro, args.global_batch, args.steps, args.warmup = "tiny", 256, 2, 2, 6, 2
    elif device.accelerator == "cpu":
        print("bench.gpu_train needs a GPU; this machine has none (docs/BENCHMARKS.md left as it is)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = synthetic_packed(work / "packed", args.steps * args.global_batch * args.seq_len * 2, 2 * args.seq_len)
        results = []
        for name, mode, hardware in (keys[key] for key in only):
            if args.smoke_on_cpu and hardware:
                continue  # compiling takes minutes on CPU and FlexAttention has no CPU backward
            results.append(run_row(args, name, mode, data, work, hardware))
            print(json.dumps(results[-1])[:400], flush=True)
        hardware = load_config(str(experiment(args, data, work / "hw", {}))).hardware
    report(args, results, hardware, device.product, record=not args.smoke_on_cpu)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
