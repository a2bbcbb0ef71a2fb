"""Eval stage throughput against the plain one-prompt reference, same checkpoint and questions.

Run: .venv/bin/python -m bench.bench_eval   (updates the bench_eval section of docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.report import goal, machine_description, markdown_table, record_goals, update_section

GOAL = 3.0
SUBJECTS = ["ceval/computer_network", "ceval/law", "cmmlu/agronomy", "cmmlu/chinese_history", "mmlu/anatomy",
            "mmlu/marketing", "hkcanto-mmlu/anatomy", "hkcanto-cultural/food", "hkcanto-law/basic_law",
            "hkcanto-dse/bio_en"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-subject", type=int, default=100, help="questions per subject")
    parser.add_argument("--benchmarks", default="../shared/data/benchmarks")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from triglot.eval.reference import reference_scores
    from triglot.eval.runner import run_eval_stage
    from triglot.eval.tiny_model import save_tiny_model

    from triglot.config import compose

    with tempfile.TemporaryDirectory() as tmp:
        hf = save_tiny_model(Path(tmp) / "hf", args.benchmarks, vocab_size=2048, hidden=128, layers=4, max_len=1024)
        cfg = compose({"defaults": {"hardware": "cpu"}, "run": {"dir": str(Path(tmp) / "run")},
                       "tracking": {"mode": "disabled"},
                       "eval": {"benchmarks_dir": args.benchmarks, "subjects": SUBJECTS, "checkpoint": str(hf),
                                "limit_per_subject": args.per_subject}})
        start = time.perf_counter()
        summary = run_eval_stage(cfg, force=True)
        stage_seconds = time.perf_counter() - start  # everything: suites, model load, scoring, outputs
        out_dir = Path(summary["out_dir"])
        samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
        timing = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))["timing"]

        model, tokenizer = AutoModelForCausalLM.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)
        start = time.perf_counter()
        ref = reference_scores(model, tokenizer, samples, 1024)  # model load not counted
        ref_seconds = time.perf_counter() - start

    worst = max(abs(a - b) for s, r in zip(samples, ref, strict=True) for a, b in zip(s["loglikelihoods"], r,
                                                                                       strict=True))
    n = len(samples)
    stage_qps, scoring_qps, ref_qps = n / stage_seconds, n / timing["scoring_seconds"], n / ref_seconds
    ratio = stage_qps / ref_qps
    rows = [["eval stage, end to end (suites, model load, scoring, outputs)", f"{stage_seconds:.1f}", f"{stage_qps:.1f}"],
            ["eval stage, scoring only", f"{timing['scoring_seconds']:.1f}", f"{scoring_qps:.1f}"],
            ["reference: one forward per prompt and choice, no batching", f"{ref_seconds:.1f}", f"{ref_qps:.1f}"]]
    body = "\n".join([
        "## Eval throughput (bench/bench_eval.py)", "",
        f"Machine: {machine_description()}", "",
        f"{n} questions ({len(SUBJECTS)} subjects across C-Eval, CMMLU, MMLU, HKCanto-Eval; zero-shot, letter "
        f"scoring), a random Llama (hidden 128, 4 layers, vocab 2048) in fp32, one process, batch size "
        f"{cfg.hardware.micro_batch_size * 4}.", "",
        markdown_table(["run", "seconds", "questions/s"], rows), "",
        f"Speed-up of the end-to-end stage over the reference: **{ratio:.1f}x** (goal >= {GOAL:.0f}x: "
        f"{'met' if ratio >= GOAL else 'NOT met'}). Largest per-sample log-likelihood difference: {worst:.2e}.",
    ])
    path = update_section("bench_eval", body)
    record_goals("bench_eval", [goal("eval: questions/s of the eval stage / one-at-a-time reference", ratio, GOAL,
                                     unit="x")])
    print(body)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
