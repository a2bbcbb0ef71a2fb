"""Preference pairs: both input forms, bad records counted by reason, answer-only labels, pairs packed apart."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from triglot.train.dpo.data import build_dpo_sampler, collate_pairs, tokenize_answer
from triglot.train.dpo.formats import load_pairs

from triglot.config import compose
from triglot.errors import ConfigError

PREF = "corpora/pref/dpo_zh_en_demo"


def spec(path: Path, fmt: str = "sharegpt", **kw):
    return compose({"dpo": {"datasets": [{"name": "t", "paths": [str(path)], "format": fmt, **kw}]}}).dpo.datasets[0]


def test_bad_records_are_counted_by_reason(shared_data: Path, tmp_path: Path) -> None:
    real = json.loads((shared_data / PREF / "dpo_en_demo.json").read_text())[:5]
    broken = [
        {**real[0], "rejected": real[0]["chosen"]},  # chosen equals rejected
        {**real[1], "chosen": {"from": "gpt", "value": "  "}},  # empty answer
        {k: v for k, v in real[2].items() if k != "rejected"},  # missing rejected
        {**real[3], "conversations": [{"from": "tool", "value": "x"}]},  # unknown speaker
        {**real[4], "conversations": real[4]["conversations"] + [{"from": "gpt", "value": "last word"}]},
        ["not", "an", "object"],
    ]
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in real + broken] + ['{"conversations": [', "", "garbage"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad: Counter = Counter()
    pairs = load_pairs(spec(path), "", bad)
    assert len(pairs) == 5
    assert bad == {"chosen equals rejected": 1, "empty answer": 1, "missing chosen or rejected": 1,
                   "unknown speaker": 1, "prompt turns not user/assistant ending with the user's": 1,
                   "not an object": 1, "not JSON": 2}


def test_plain_prompt_form(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    rows = [{"prompt": "講廣東話好難嗎？", "chosen": "唔難，慢慢嚟。", "rejected": "No.", "system": "Be kind."},
            {"prompt": "Hi", "chosen": "Hello!"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    bad: Counter = Counter()
    (pair,) = load_pairs(spec(path, "prompt"), "", bad)
    assert pair.prompt == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "講廣東話好難嗎？"}]
    assert (pair.chosen, pair.rejected) == ("唔難，慢慢嚟。", "No.")
    assert bad == {"missing chosen or rejected": 1}


def test_labels_only_on_the_last_answer(tokenizer) -> None:
    from triglot.train.sft.templates import prepare_tokenizer

    prepare_tokenizer(tokenizer, "chatml")
    prompt = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "earlier answer"},
              {"role": "user", "content": "two"}]
    ids, mask = tokenize_answer(tokenizer, prompt, "final answer")
    assert tokenizer.decode(ids[mask]).strip() == "final answer<|im_end|>"


def test_shared_pairs_pack_without_crossing(shared_data: Path, tokenizer) -> None:
    cfg = compose({"run": {"seed": 3}, "train": {"seq_len": 512}, "dpo": {"datasets": [
        {"name": "en", "paths": [str(shared_data / PREF / "dpo_en_demo.json")], "max_samples": 60},
        {"name": "zh", "paths": [str(shared_data / PREF / "dpo_zh_demo.json")], "max_samples": 60}]}})
    sampler = build_dpo_sampler(cfg, tokenizer)
    assert sum(len(d.tokens) for d in sampler.datasets) == 120  # long ones are cut, not lost
    batch = collate_pairs([sampler[i] for i in range(4)])
    seg, labels, pos = batch["segments"], batch["labels"], batch["position_ids"]
    assert batch["pairs"] >= 4 and int(seg.max()) == 2 * batch["pairs"] - 1
    assert batch["reference"].shape == (batch["pairs"], 2)
    for s in range(2 * batch["pairs"]):
        rows, cols = np.nonzero((seg == s).numpy())
        assert len(set(rows.tolist())) == 1 and (labels[rows, cols] != -100).any()  # one row, answer tokens
        assert pos[rows[0], cols[0]] == 0 and (np.diff(pos[rows, cols].numpy()) == 1).all()  # its own document
    assert (labels[seg < 0] == -100).all()
    assert sampler[7].input_ids.tolist() == build_dpo_sampler(cfg, tokenizer)[7].input_ids.tolist()


def test_overlong_drop_and_empty_datasets(shared_data: Path, tokenizer) -> None:
    base = {"train": {"seq_len": 64}, "dpo": {"overlong": "drop", "datasets": [
        {"name": "zh", "paths": [str(shared_data / PREF / "dpo_zh_demo.json")], "max_samples": 30}]}}
    with pytest.raises(ConfigError, match="no usable preference pair"):
        build_dpo_sampler(compose(base), tokenizer)
    with pytest.raises(ConfigError, match="dpo.datasets is empty"):
        build_dpo_sampler(compose({}), tokenizer)
