"""Fixtures for tokenizer tests: clean-format data from the real corpora, and trained tokenizers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tokenizer.tokenizer_corpus import make_clean_dir, tokenizer_config


@pytest.fixture(scope="session")
def clean_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("clean")
    return folder, make_clean_dir(shared_data / "corpora", folder)


@pytest.fixture(scope="session")
def bpe_run(clean_data, tmp_path_factory: pytest.TempPathFactory):
    """A run folder with an 8,000-token byte-level BPE tokenizer trained (and a SentencePiece comparison)."""
    from triglot.tokenizer.train import run_tokenizer_stage

    run_dir = tmp_path_factory.mktemp("run_bpe")
    cfg = tokenizer_config(run_dir, clean_data[0],
                           "tokenizer.compare=[{name: sp-unigram-8000, backend: sentencepiece, vocab_size: 8000}]")
    run_tokenizer_stage(cfg)
    return cfg


@pytest.fixture(scope="session")
def sp_run(clean_data, tmp_path_factory: pytest.TempPathFactory):
    """A run folder with a SentencePiece BPE tokenizer (byte fallback) trained."""
    from triglot.tokenizer.train import run_tokenizer_stage

    run_dir = tmp_path_factory.mktemp("run_sp")
    cfg = tokenizer_config(run_dir, clean_data[0], "tokenizer.backend=sentencepiece", "tokenizer.sp_model_type=bpe",
                           "tokenizer.vocab_size=8000")
    run_tokenizer_stage(cfg)
    return cfg
