"""SFT says what it does while it reads and tokenizes its chat datasets (its first minute on the quickstart)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from triglot.train.sft import data
from triglot.train.sft.data import build_sft_sampler

from triglot.config import compose

SFT = "corpora/sft"
EN_FIELDS = {"instruction": "en_instruction", "input": "en_input", "output": "en_output"}


def test_tokenizing_logs_each_dataset_and_progress(tokenizer, shared_data: Path, caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose({"train": {"seq_len": 256}, "sft": {"template": "chatml", "datasets": [
        {"name": "en", "paths": [str(shared_data / SFT / "sft_alpaca_bilingual_en_zh/alpaca_chinese_part_0.json")],
         "fields": EN_FIELDS, "language": "en", "max_samples": 30},
        {"name": "yue", "paths": [str(shared_data / SFT / "yue_alpaca_seed/regen.jsonl")], "language": "yue"}]}})
    monkeypatch.setattr(data, "PROGRESS_EVERY_S", 0.0)  # a progress line after every conversation
    with caplog.at_level(logging.INFO, logger="triglot.train.sft.data"):
        build_sft_sampler(cfg, tokenizer)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sft: reading and tokenizing 2 chat datasets with the chatml template", lines
    assert "sft dataset en: 15/30 conversations tokenized" in lines, lines
    assert any(line.startswith("sft dataset 1/2 en (en): 30 conversations, weight 1, ") for line in lines), lines
    assert any(line.startswith("sft dataset 2/2 yue (yue): 15 conversations") for line in lines), lines
    assert lines[-1].startswith("sft: 45 conversations ready in "), lines
