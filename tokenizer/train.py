"""`triglot tokenizer train`: a tokenizer trained on a language-balanced sample of the cleaned data.

Reads <run>/data/clean, writes a Hugging Face tokenizer folder (<run>/tokenizer), the fertility report
for it and any comparison variants, and manifest.json last. Everything is written aside in `_training/`
and moved into place when whole, tokenizer.json last: a folder without it is one `data pack` refuses.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from triglot.tokenizer.fertility import fertility_report, write_fertility

from triglot.config.tokenizer import BACKENDS, HAN_SPLITS, SP_MODEL_TYPES
from triglot.errors import ConfigError
from triglot.manifest import MANIFEST, StageManifest
from triglot.paths import fsync_path, stage_dir

log = logging.getLogger(__name__)
TRAINING = "_training"  # where a run writes before its files take their final names


def validate(section: Any) -> None:
    """Config errors before any work: name the key and the accepted values."""
    variants = [("tokenizer", section), *[(f"tokenizer.compare[{i}]", v) for i, v in enumerate(section.compare)]]
    for key, v in variants:
        if v.backend not in BACKENDS:
            raise ConfigError(f"{key}.backend is '{v.backend}'; use one of: {', '.join(BACKENDS)}")
        if v.sp_model_type not in SP_MODEL_TYPES:
            raise ConfigError(f"{key}.sp_model_type is '{v.sp_model_type}'; use one of: {', '.join(SP_MODEL_TYPES)}")
        if v.vocab_size < 300:
            raise ConfigError(f"{key}.vocab_size is {v.vocab_size}; byte-level models need at least 300 (256 bytes "
                              "plus special tokens)")
    if section.han_split not in HAN_SPLITS:
        raise ConfigError(f"tokenizer.han_split is '{section.han_split}'; use one of: {', '.join(HAN_SPLITS)}")
    if section.sample_chars <= 0:
        raise ConfigError("tokenizer.sample_chars must be positive")
    if any(r < 0 for r in section.language_ratios.values()):
        raise ConfigError("tokenizer.language_ratios must not be negative")
    if not section.special_tokens.eos or not section.special_tokens.bos or not section.special_tokens.pad:
        raise ConfigError("tokenizer.special_tokens needs bos, eos and pad")


def train_one(texts: list[str], section: Any, variant: Any, folder: Path) -> Tokenizer:
    """Train one backend on `texts` and save it as a Hugging Face folder at `folder`."""
    from triglot.tokenizer.backends import TrainOptions, train_bpe, train_sentencepiece
    from triglot.tokenizer.hf_folder import save_hf_tokenizer, special_token_list

    opts = TrainOptions(
        vocab_size=variant.vocab_size, min_frequency=section.min_frequency,
        max_token_length=section.max_token_length, han_split=section.han_split,
        split_digits=section.split_digits, special_tokens=special_token_list(section.special_tokens),
        sp_model_type=variant.sp_model_type, character_coverage=section.character_coverage,
        seed=section.sample_seed,
    )
    started = time.time()
    if variant.backend == "bpe":
        tok, sp_model = train_bpe(texts, opts), None
        save_hf_tokenizer(tok, folder, section.special_tokens, section.chat_template)
    else:
        with tempfile.TemporaryDirectory(prefix="triglot-sp-") as work:
            tok, sp_model = train_sentencepiece(texts, opts, Path(work))
            save_hf_tokenizer(tok, folder, section.special_tokens, section.chat_template, sp_model)
    log.info("trained %s (%s, vocab %d) in %.1fs", folder, variant.backend, tok.get_vocab_size(),
             time.time() - started)
    return tok


def run_tokenizer_stage(cfg: Any, force: bool = False) -> dict:
    """Train the configured tokenizer (and comparison variants), report fertility, write the manifest."""
    from triglot.tokenizer.sample import clean_files, draw_sample

    section = cfg.tokenizer
    validate(section)
    in_dir = stage_dir(cfg, "clean", section.input_dir)
    out_dir = stage_dir(cfg, "tokenizer", section.output_dir)
    files = clean_files(in_dir)
    manifest = StageManifest.open(out_dir, stage="tokenizer", config=section, inputs=files)
    if manifest.is_current() and not force:
        log.info("tokenizer in %s is current; skipping (use --force to retrain)", out_dir)
        return manifest.previous
    sample = draw_sample(files, dict(section.language_ratios), section.sample_chars, section.sample_seed,
                         section.fertility_docs)
    log.info("training sample: %s", sample.summary()["taken_chars"])
    texts = sample.texts()
    _withdraw_completion(out_dir)
    aside = out_dir / TRAINING
    try:
        main_name = f"{section.backend}-{section.vocab_size}"
        trained = {main_name: train_one(texts, section, section, aside)}
        for variant in section.compare:
            trained[variant.name] = train_one(texts, section, variant, aside / "compare" / variant.name)
        report = fertility_report(trained, sample.heldout)
        write_fertility(report, aside)
    except BaseException:
        shutil.rmtree(aside, ignore_errors=True)  # a full disk gets its space back
        raise
    outputs = _publish(aside, out_dir)
    vocab = trained[main_name].get_vocab_size(with_added_tokens=True)
    counts = {"vocab_size": vocab, "sample_documents": len(texts), "sample_chars": sum(map(len, texts))}
    written = manifest.write(outputs=outputs, counts=counts, backend=section.backend, sample=sample.summary(),
                             fertility=report)
    log.info("tokenizer written to %s (vocab %d)", out_dir, vocab)
    return written


def _withdraw_completion(out_dir: Path) -> None:
    """The manifest marks the folder current and tokenizer.json makes it a tokenizer `data pack` reads:
    remove both (and what a new run may not write again) before training, so a run that dies leaves
    neither the old manifest nor a folder that packs."""
    for name in (MANIFEST, "tokenizer.json", "tokenizer.model", "compare", TRAINING):
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if out_dir.is_dir():
        fsync_path(out_dir)


def _publish(aside: Path, out_dir: Path) -> list[Path]:
    """Move everything written in `aside` to `out_dir`, on disk first, tokenizer.json last; the moved paths."""
    for path in aside.rglob("*"):
        if path.is_file():
            fsync_path(path)
    names = sorted(p.name for p in aside.iterdir() if p.name != "tokenizer.json") + ["tokenizer.json"]
    for name in names:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(aside / name, target)
    fsync_path(out_dir)
    aside.rmdir()
    return [out_dir / name for name in names]
