"""Preference tuning on the shared pairs on CPU: does reward accuracy rise above chance within a few minutes?

    python -m bench.bench_dpo           # records the bench_dpo section of docs/BENCHMARKS.md
    python -m bench.bench_dpo --smoke   # a few steps; prints, records nothing

`triglot dpo` on two CPU ranks (ZeRO-2, fp32) from a small Llama built here, on the Mandarin and English pairs of
corpora/pref/dpo_zh_en_demo. The last 20% of each file is held out: after training, the exported model and the
starting model score those pairs one sequence at a time, and the held-out reward accuracy is the share of pairs
whose implicit reward (beta * log-ratio to the start) is higher for the chosen answer.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bench.report import goal, machine_description, markdown_table, publish, versions
from triglot.testing import run_torchrun

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PREF = SHARED / "corpora" / "pref" / "dpo_zh_en_demo"
FILES = {"en": "dpo_en_demo.json", "zh-Hans": "dpo_zh_demo.json"}
HELD_OUT = 0.2
BETA = 0.1


def build_start(work: Path, hidden: int = 128, layers: int = 4, vocab: int = 4000) -> Path:
    """A byte-level BPE trained on the pairs' own training split and a randomly initialised Llama over it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = []
    for path in sorted((work / "train").glob("*.json")):
        for r in json.loads(path.read_text(encoding="utf-8")):
            texts += [t["value"] for t in r["conversations"]] + [r["chosen"]["value"], r["rejected"]["value"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    out = work / "run" / "sft" / "export"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def split_pairs(work: Path) -> dict[str, int]:
    """Training and held-out files in the scratch folder (the shared files stay where they are)."""
    counts = {}
    for language, name in FILES.items():
        records = json.loads((PREF / name).read_text(encoding="utf-8"))
        cut = int(len(records) * (1 - HELD_OUT))
        for part, rows in (("train", records[:cut]), ("heldout", records[cut:])):
            (work / part).mkdir(parents=True, exist_ok=True)
            (work / part / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        counts[language] = cut
    return counts


def datasets(work: Path, part: str) -> list[dict]:
    return [{"name": language.split("-")[0], "language": language, "paths": [str(work / part / name)]}
            for language, name in FILES.items()]


def write_config(work: Path, steps: int, seq_len: int, batch: int) -> Path:
    cfg = {
        "run": {"name": "bench-dpo", "dir": str(work / "run"), "seed": 0, "stages": ["sft", "dpo"]},
        "tracking": {"mode": "disabled"},
        "hardware": {"name": "cpu"},
        "train": {"seq_len": seq_len, "global_batch_size": batch, "lr": 1e-3, "warmup_steps": 5,
                  "schedule": "constant", "zero_stage": 2, "val_every": 0},
        "dpo": {"beta": BETA, "datasets": datasets(work, "train"),
                "train": {"steps": steps, "checkpoint": {"every": steps}}},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def heldout_accuracy(work: Path, seq_len: int) -> dict[str, dict[str, float]]:
    """Per language: held-out pairs, reward accuracy and mean margin of the tuned model against the start."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from triglot.train.dpo.data import tokenize_pairs

    from triglot.config import compose

    export, start = work / "run" / "dpo" / "export", work / "run" / "sft" / "export"
    tokenizer = AutoTokenizer.from_pretrained(export)  # it carries the chat template the training used
    policy, reference = (AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval() for p in (export, start))
    if reference.get_input_embeddings().weight.shape[0] < len(tokenizer):  # chat tokens added during training
        reference.resize_token_embeddings(len(tokenizer))

    def logp(model, ids, mask) -> float:
        ids = torch.as_tensor(ids)[None]
        logits = model(input_ids=ids).logits[0, :-1].float()
        token = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
        return float(token[torch.as_tensor(mask[1:])].sum())

    out = {}
    cfg = compose({"dpo": {"datasets": datasets(work, "heldout")}})
    with torch.no_grad():
        for spec in cfg.dpo.datasets:
            pairs = tokenize_pairs(spec, tokenizer, seq_len, "", "truncate")
            margins = []
            for (chosen, rejected), (mc, mr) in zip(pairs.tokens, pairs.masks, strict=True):
                ratio = (logp(policy, chosen, mc) - logp(reference, chosen, mc)
                         - logp(policy, rejected, mr) + logp(reference, rejected, mr))
                margins.append(BETA * ratio)
            out[spec.language] = {"pairs": len(margins), "accuracy": sum(m > 0 for m in margins) / len(margins),
                                  "margin": sum(margins) / len(margins)}
    return out


def read_metrics(work: Path) -> list[dict]:
    path = work / "run" / "dpo" / "checkpoints" / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if "rewards/accuracy" in r]


def window(rows: list[dict], key: str, first: int, last: int) -> float:
    values = [r[key] for r in rows if first <= r["step"] <= last]
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps; print, do not record")
    parser.add_argument("--steps", type=int, default=0, help="training steps (default: 80, smoke: 6)")
    args = parser.parse_args()
    steps = args.steps or (6 if args.smoke else 80)
    seq_len, batch = 1024, 8
    work = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    try:
        train_pairs = split_pairs(work)
        start = build_start(work)
        config = write_config(work, steps, seq_len, batch)
        began = time.perf_counter()
        run_torchrun(2, ["dpo", str(config)], timeout=3600)
        wall = time.perf_counter() - began
        rows = read_metrics(work)
        held = heldout_accuracy(work, seq_len)
        params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(start)
                     .parameters())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tail = max(1, min(20, steps // 5))
    head_acc = window(rows, "rewards/accuracy", 1, tail)
    tail_acc = window(rows, "rewards/accuracy", steps - tail + 1, steps)
    tail_margin = window(rows, "rewards/margin", steps - tail + 1, steps)
    pairs_seen = sum(r["pairs"] for r in rows)
    table = markdown_table(
        ["measure", "value"],
        [["model", f"Llama, {params / 1e6:.1f}M parameters, random init, tokenizer trained on the training pairs"],
         ["training pairs (en, zh-Hans)", f"{train_pairs['en']}, {train_pairs['zh-Hans']}"],
         ["steps x global batch (rows of 1024 tokens, pairs packed)", f"{steps} x {batch}"],
         ["pairs seen (with repeats)", f"{pairs_seen:.0f}"],
         ["wall time of `triglot dpo` (2 ranks, incl. start-up and reference pre-pass)", f"{wall:.0f} s"],
         [f"train reward accuracy, steps 1-{tail}", f"{head_acc:.3f}"],
         [f"train reward accuracy, steps {steps - tail + 1}-{steps}", f"{tail_acc:.3f}"],
         [f"train reward margin, steps {steps - tail + 1}-{steps}", f"{tail_margin:.3f}"],
         *[[f"held-out reward accuracy, {lang} ({h['pairs']} pairs)", f"{h['accuracy']:.3f} "
            f"(mean margin {h['margin']:.3f})"] for lang, h in held.items()]])
    body = "\n".join([
        "## Preference tuning (`bench/bench_dpo.py`)", "",
        f"Machine: {machine_description()}", "",
        f"`triglot dpo` (sigmoid loss, beta {BETA}, reference log-probs precomputed once by the starting model) on two "
        "CPU ranks with ZeRO-2 in fp32, from a small randomly initialised Llama, on the shared Mandarin and English "
        f"preference pairs with the last {HELD_OUT:.0%} of each file held out. Reward accuracy is the share of pairs "
        "whose chosen answer gets the higher implicit reward (beta times the log-prob ratio to the starting model). "
        "Training figures are each step's own batch (before its update; a tie, as at step 1, counts as wrong); held-out figures come from the export, "
        "scored one sequence at a time by plain transformers. The model starts with no language knowledge, so the "
        "held-out accuracy measures how far preferences learnt on 480 pairs carry to unseen prompts, not what a "
        "pretrained model would reach.", "",
        table])
    goals = [goal(f"dpo: train reward accuracy, last {tail} of {steps} steps on CPU", tail_acc, 0.5,
                  baseline=f"chance (0.5); {versions('torch', 'deepspeed')}")]
    publish("bench_dpo", body, goals, record=not args.smoke)
    if not math.isfinite(tail_acc):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
