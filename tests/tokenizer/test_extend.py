"""Extending a tokenizer trained without Cantonese by mined Cantonese tokens."""

from __future__ import annotations

import json

from triglot.tokenizer.extend import run_extend
from triglot.tokenizer.pack import run_pack_stage
from triglot.tokenizer.train import run_tokenizer_stage

from tests.tokenizer.tokenizer_corpus import tokenizer_config
from triglot.packed import PackedDataset
from triglot.paths import stage_dir


def test_extend_adds_cantonese_tokens(clean_data, tmp_path):
    from transformers import AutoTokenizer

    clean_dir, rows = clean_data
    cfg = tokenizer_config(tmp_path, clean_dir, "tokenizer.vocab_size=3000",
                           "tokenizer.language_ratios={en: 0.5, zh-Hans: 0.3, zh-Hant: 0.2}",
                           "tokenizer.extend.min_count=3", "tokenizer.extend.max_new_tokens=300",
                           f"pack.tokenizer_dir={tmp_path}/tokenizer_extended")
    run_tokenizer_stage(cfg)
    manifest = run_extend(cfg)
    out = tmp_path / "tokenizer_extended"
    record = json.loads((out / "extension.json").read_text())
    added = [a["token"] for a in record["added"]]
    assert 0 < len(added) <= 300 and len(set(added)) == len(added)
    # Cantonese particles and pronouns, which the Mandarin and English training text lacked, are mined.
    assert sum(any(ch in a for ch in "嘅咗喺哋佢嘢冇") for a in added) >= 10, added[:30]
    tok = AutoTokenizer.from_pretrained(str(out))
    base = AutoTokenizer.from_pretrained(str(stage_dir(cfg, "tokenizer")))
    # Training resizes embeddings to len(tokenizer): it must count the added tokens.
    assert len(tok) == len(base) + len(added) == record["length"] == manifest["counts"]["length"]
    assert record["fertility_after"]["tokens_per_unit"] < record["fertility_before"]["tokens_per_unit"]
    yue = [r["text"] for r in rows if r["language"] == "yue"]
    assert all(tok.decode(tok.encode(t, add_special_tokens=False)) == t for t in yue)
    # Packing with the extended tokenizer records its full length as the vocabulary size.
    run_pack_stage(cfg)
    data = PackedDataset(stage_dir(cfg, "pack"))
    assert data.vocab_size == len(tok)
    assert max(int(data.tokens(i).max()) for i in range(len(data))) >= len(base)
