"""Tokenizer training: both backends load with AutoTokenizer, render chat, round-trip real text exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tokenizer.tokenizer_corpus import CASES
from triglot.errors import ConfigError
from triglot.paths import stage_dir

LANGUAGES = {"en", "zh-Hans", "zh-Hant", "yue", "mixed", "other"}


def _load(cfg):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(stage_dir(cfg, "tokenizer")))


def test_sample_covers_every_hard_case(clean_data):
    _, rows = clean_data
    assert {r["language"] for r in rows} == LANGUAGES
    for case, check in CASES.items():
        assert any(check(r["text"]) for r in rows), f"no real document with {case} in the test sample"
    assert any("𠺢" in r["text"] or "𨋢" in r["text"] for r in rows)


@pytest.mark.parametrize("run", ["bpe_run", "sp_run"])
def test_round_trip_every_document(run, clean_data, request):
    tok = _load(request.getfixturevalue(run))
    _, rows = clean_data
    texts = [r["text"] for r in rows]
    encoded = tok(texts, add_special_tokens=False)["input_ids"]
    bad = [t for t, ids in zip(texts, encoded, strict=True) if tok.decode(ids) != t]
    assert not bad, f"{len(bad)} of {len(texts)} documents do not round-trip; first: {bad[0][:200]!r}"


@pytest.mark.parametrize("run", ["bpe_run", "sp_run"])
def test_autotokenizer_special_tokens_and_chat_template(run, request):
    cfg = request.getfixturevalue(run)
    tok = _load(cfg)
    special = cfg.tokenizer.special_tokens
    assert tok.eos_token == special.eos and tok.bos_token == special.bos and tok.pad_token == special.pad
    assert len({tok.eos_token_id, tok.bos_token_id, tok.pad_token_id}) == 3
    for marker in special.chat:
        assert len(tok.encode(marker, add_special_tokens=False)) == 1
    messages = [{"role": "user", "content": "你今日食咗飯未？"}, {"role": "assistant", "content": "食咗喇，多謝。"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text == ("<|begin_of_text|><|im_start|>user\n你今日食咗飯未？<|im_end|>\n"
                    "<|im_start|>assistant\n食咗喇，多謝。<|im_end|>\n")
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "食咗喇，多謝。<|im_end|>"


def test_vocab_size_digits_and_han_runs(bpe_run):
    tok = _load(bpe_run)
    assert len(tok) == 8000
    pieces = tok.convert_ids_to_tokens(tok.encode("2024年有12345人", add_special_tokens=False))
    digits = [p for p in pieces if p.isdigit()]
    assert digits == list("2024") + list("12345"), pieces
    # Han text is merged into multi-character tokens (words), not left one character (or byte) apiece.
    ids = tok.encode("香港特別行政區政府", add_special_tokens=False)
    assert len(ids) < 9


def test_manifest_sample_and_fertility(bpe_run):
    out = stage_dir(bpe_run, "tokenizer")
    manifest = json.loads((out / "manifest.json").read_text())
    taken = manifest["sample"]["taken_chars"]
    assert set(taken) == LANGUAGES
    # Language ratios hold English back so Cantonese gets its share: yue is ~0.25 of the sample.
    total = sum(taken.values())
    assert taken["yue"] / total > 0.15 and taken["en"] / total < 0.45
    report = json.loads((out / "fertility.json").read_text())
    assert set(report) == {"bpe-8000", "sp-unigram-8000"}
    for name, entry in report.items():
        assert set(entry["languages"]) == LANGUAGES
        for lang, scores in entry["languages"].items():
            assert scores["tokens"] > 0 and 0 < scores["tokens_per_char"] < 4, (name, lang)
            assert scores["unit"] == ("word" if lang in ("en", "other") else "Han character")
    md = (out / "fertility.md").read_text()
    assert "bpe-8000 (8000) tok/char" in md and "sp-unigram-8000" in md and "| yue |" in md
    assert Path(out / "compare" / "sp-unigram-8000" / "tokenizer.model").is_file()


def test_second_run_skips(bpe_run):
    from triglot.tokenizer.train import run_tokenizer_stage

    before = json.loads((stage_dir(bpe_run, "tokenizer") / "manifest.json").read_text())
    again = run_tokenizer_stage(bpe_run)
    assert again["timings"] == before["timings"]


def test_bad_backend_is_a_config_error(clean_data, tmp_path):
    from triglot.tokenizer.train import run_tokenizer_stage

    from tests.tokenizer.tokenizer_corpus import tokenizer_config

    cfg = tokenizer_config(tmp_path, clean_data[0], "tokenizer.backend=wordpiece")
    with pytest.raises(ConfigError, match="tokenizer.backend"):
        run_tokenizer_stage(cfg)
