"""Tokenizer and pack sections: tokenizer training on cleaned text, and packing into token shards.

Every default of `tokenizer train`, `tokenizer extend` and `data pack` lives here; YAML holds what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKENDS = ("bpe", "sentencepiece")
SP_MODEL_TYPES = ("unigram", "bpe")
HAN_SPLITS = ("runs", "chars")


def _default_ratios() -> dict[str, float]:
    # Share of the training sample's characters per language. Cantonese gets as much as English although
    # the corpora hold far less of it, so its words earn merges; a language short of data gives what it has.
    return {"en": 0.3, "zh-Hans": 0.2, "zh-Hant": 0.2, "yue": 0.25, "mixed": 0.04, "other": 0.01}


@dataclass
class SpecialTokens:
    bos: str = "<|begin_of_text|>"
    eos: str = "<|end_of_text|>"
    pad: str = "<|pad|>"
    # SentencePiece needs an unknown piece; byte-level BPE never produces it.
    unk: str = "<|unk|>"
    # Chat markers used by the default chat template.
    chat: list[str] = field(default_factory=lambda: ["<|im_start|>", "<|im_end|>"])
    # Further special tokens reserved in the vocabulary (tool calls, fill-in-the-middle ...).
    extra: list[str] = field(default_factory=list)


@dataclass
class CompareVariant:
    """A further tokenizer trained on the same sample only for the side-by-side fertility report."""

    name: str = "???"
    backend: str = "sentencepiece"
    vocab_size: int = 8000
    sp_model_type: str = "unigram"


@dataclass
class ExtendSection:
    """`triglot tokenizer extend`: add frequent tokens an existing tokenizer splits badly."""

    # Hugging Face tokenizer folder to extend; empty means <run.dir>/tokenizer.
    base_dir: str = ""
    # Clean-stage output to mine; empty means tokenizer.input_dir, or <run.dir>/data/clean when that is empty.
    corpus_dir: str = ""
    # Only documents of this language are mined.
    language: str = "yue"
    # Where the extended tokenizer is written; empty means <run.dir>/tokenizer_extended.
    output_dir: str = ""
    max_new_tokens: int = 1000
    # A candidate must occur at least this often in the mined text.
    min_count: int = 20
    # Candidates are runs of 1..max_ngram Han characters.
    max_ngram: int = 4
    # Candidates the base tokenizer encodes in at least this many tokens count as badly split.
    min_base_tokens: int = 2
    # Characters of the corpus read for mining (0 = all).
    max_chars: int = 20_000_000


@dataclass
class TokenizerSection:
    # bpe (Hugging Face tokenizers, byte level) or sentencepiece
    backend: str = "bpe"
    vocab_size: int = 8000
    # Clean-stage output to train on; empty means <run.dir>/data/clean.
    input_dir: str = ""
    # Where the tokenizer is written; empty means <run.dir>/tokenizer.
    output_dir: str = ""
    # A merge (BPE) needs a pair seen this often.
    min_frequency: int = 2
    # Longest token in characters; stops whole Chinese clauses from becoming tokens.
    max_token_length: int = 16
    # SentencePiece only: unigram or bpe (always with byte fallback), and the share of characters
    # that get their own piece (the rest fall back to UTF-8 bytes).
    sp_model_type: str = "unigram"
    character_coverage: float = 0.9995
    # Han pre-tokenisation: "runs" keeps a run of Han characters as one unit so merges can form words
    # inside it (never across script, digit or punctuation boundaries); "chars" isolates every character.
    han_split: str = "runs"
    # Every digit its own token, so numbers are split the same way wherever they appear.
    split_digits: bool = True
    # Characters drawn from the clean output for training, shared out by language_ratios.
    sample_chars: int = 2_000_000
    language_ratios: dict[str, float] = field(default_factory=_default_ratios)
    sample_seed: int = 1234
    special_tokens: SpecialTokens = field(default_factory=SpecialTokens)
    # Jinja chat template; empty means the ChatML-style default in tokenizer/hf_folder.py.
    chat_template: str = ""
    # Held-out documents per language scored in fertility.md / fertility.json.
    fertility_docs: int = 300
    compare: list[CompareVariant] = field(default_factory=list)
    extend: ExtendSection = field(default_factory=ExtendSection)


@dataclass
class PackSection:
    # Clean-stage output to pack; empty means <run.dir>/data/clean.
    input_dir: str = ""
    # Tokenizer folder; empty means <run.dir>/tokenizer.
    tokenizer_dir: str = ""
    # Where shards are written; empty means <run.dir>/data/packed.
    output_dir: str = ""
    # Worker processes; 0 means one per CPU core.
    workers: int = 0
    # Documents per output shard; each shard is one unit of work and of resumption.
    docs_per_shard: int = 5_000
    # Documents per encode_batch call inside a worker.
    batch_size: int = 1000
    # Put BOS before every document (EOS always ends one).
    add_bos: bool = False
