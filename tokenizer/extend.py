"""`triglot tokenizer extend`: add the Cantonese characters and words an existing tokenizer splits badly.

Candidates are frequent runs of 1..max_ngram Han characters in the mined text; each is scored by the
tokens it would save (count x (base tokens - 1)). The grown tokenizer's `len()` is what training resizes
the model's embeddings to (`model.resize_token_embeddings(len(tokenizer))`); extension.json records it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from triglot.tokenizer.fertility import HAN, score_language
from triglot.tokenizer.sample import clean_files, iter_documents, unit_hash

from triglot.errors import ConfigError, InputError
from triglot.manifest import StageManifest
from triglot.paths import run_dir, stage_dir

log = logging.getLogger(__name__)
HAN_RUN = re.compile(f"(?:{HAN.pattern})+")
# Documents whose hash falls above this are held out of mining and used to measure the gain.
HELDOUT_FROM = 0.9


def count_han_ngrams(texts: list[str], max_ngram: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        for run in HAN_RUN.findall(text):
            for n in range(1, max_ngram + 1):
                counts.update(run[i:i + n] for i in range(len(run) - n + 1))
    return counts


def mine_tokens(base: Any, texts: list[str], max_new_tokens: int, min_count: int, max_ngram: int,
                min_base_tokens: int = 2) -> list[tuple[str, int, int]]:
    """(token, count, base tokens) for the candidates that save the most tokens, best first.

    `base` is a `tokenizers.Tokenizer`. A candidate mostly seen inside an already chosen longer one
    is skipped: it would save little beyond it.
    """
    counts = count_han_ngrams(texts, max_ngram)
    candidates = [(gram, n) for gram, n in counts.items() if n >= min_count]
    vocab = base.get_vocab(with_added_tokens=True)
    candidates = [(gram, n) for gram, n in candidates if gram not in vocab]
    costs = [len(e.ids) for e in base.encode_batch([g for g, _ in candidates], add_special_tokens=False)]
    scored = sorted(((n * (cost - 1), gram, n, cost) for (gram, n), cost in zip(candidates, costs, strict=True)
                     if cost >= min_base_tokens), key=lambda s: (-s[0], s[1]))
    chosen: list[tuple[str, int, int]] = []
    for _, gram, n, cost in scored:
        if len(chosen) >= max_new_tokens:
            break
        if any(gram in longer and n_longer >= 0.8 * n for longer, n_longer, _ in chosen):
            continue
        chosen.append((gram, n, cost))
    return chosen


def _corpus_texts(files: list[Path], language: str, max_chars: int, seed: int) -> tuple[list[str], list[str]]:
    mined, heldout, total = [], [], 0
    for doc in iter_documents(files):
        if doc["language"] != language or not doc["text"]:
            continue
        if unit_hash(seed, doc["id"]) >= HELDOUT_FROM:
            heldout.append(doc["text"])
        elif not max_chars or total < max_chars:
            mined.append(doc["text"])
            total += len(doc["text"])
    return mined, heldout


def extend_tokenizer(base_dir: Path, out_dir: Path, tokens: list[str]) -> Any:
    """Load `base_dir` with AutoTokenizer, add `tokens`, save to `out_dir`; return the grown tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    tok.add_tokens(tokens)
    tok.save_pretrained(str(out_dir))
    return tok


def run_extend(cfg: Any, force: bool = False) -> dict:
    """Mine `tokenizer.extend.language` text of the clean output and grow the base tokenizer with it."""
    from tokenizers import Tokenizer

    section = cfg.tokenizer.extend
    if section.max_new_tokens <= 0 or section.max_ngram <= 0:
        raise ConfigError("tokenizer.extend.max_new_tokens and tokenizer.extend.max_ngram must be positive")
    base_dir = Path(section.base_dir) if section.base_dir else stage_dir(cfg, "tokenizer")
    out_dir = Path(section.output_dir) if section.output_dir else run_dir(cfg) / "tokenizer_extended"
    if not (base_dir / "tokenizer.json").is_file():
        raise InputError(f"{base_dir}/tokenizer.json not found: set tokenizer.extend.base_dir to a Hugging Face "
                         "tokenizer folder with a tokenizer.json (a fast tokenizer)")
    files = clean_files(stage_dir(cfg, "clean", section.corpus_dir or cfg.tokenizer.input_dir))
    manifest = StageManifest.open(out_dir, stage="tokenizer_extend", config=section,
                                  inputs=[*files, base_dir / "tokenizer.json"])
    if manifest.is_current() and not force:
        return manifest.previous
    mined, heldout = _corpus_texts(files, section.language, section.max_chars, cfg.tokenizer.sample_seed)
    if not mined:
        raise InputError(f"no '{section.language}' documents in {files[0].parent}; set tokenizer.extend.language")
    base = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    chosen = mine_tokens(base, mined, section.max_new_tokens, section.min_count, section.max_ngram,
                         section.min_base_tokens)
    tok = extend_tokenizer(base_dir, out_dir, [gram for gram, _, _ in chosen])
    grown = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    heldout = heldout or mined[:200]
    before, after = score_language(base, section.language, heldout), score_language(grown, section.language, heldout)
    record = {"base": str(base_dir), "base_length": base.get_vocab_size(with_added_tokens=True), "length": len(tok),
              "added": [{"token": g, "count": n, "base_tokens": c} for g, n, c in chosen],
              "fertility_before": before, "fertility_after": after}
    (out_dir / "extension.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info("added %d tokens (length %d); %s tokens per Han character %.3f -> %.3f", len(chosen), len(tok),
             section.language, before["tokens_per_unit"] or 0, after["tokens_per_unit"] or 0)
    outputs = [p for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json"]
    counts = {"added_tokens": len(chosen), "length": len(tok), "base_length": record["base_length"]}
    return manifest.write(outputs=outputs, counts=counts, fertility_before=before, fertility_after=after)
