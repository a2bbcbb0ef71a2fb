"""Tokenizer and pack sections: tokenizer training on cleaned text, and packing into token shards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenizerSection:
    # bpe (Hugging Face tokenizers, byte level) or sentencepiece
    backend: str = "bpe"
    vocab_size: int = 8000
    # Clean-stage output to train on; empty means <run.dir>/data/clean.
    input_dir: str = ""
    # Where the tokenizer is written; empty means <run.dir>/tokenizer.
    output_dir: str = ""


@dataclass
class PackSection:
    # Clean-stage output to pack; empty means <run.dir>/data/clean.
    input_dir: str = ""
    # Tokenizer folder; empty means <run.dir>/tokenizer.
    tokenizer_dir: str = ""
    # Where shards are written; empty means <run.dir>/data/packed.
    output_dir: str = ""
    workers: int = 1
