"""SFT training samples: chat datasets mixed by weight, tokenized with answer-only labels, packed.

Sample `i` is a pure function of (seed, i), as in pretraining: conversation `j` of the run comes from
a seeded shuffle of fixed per-block dataset counts, and sequences are cut greedily from that stream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from triglot.train.data import IGNORE, InterleavedSchedule, Sample
from triglot.train.sft.formats import expand_paths, load_conversations
from triglot.train.sft.templates import prepare_tokenizer, tokenize_conversation

from triglot.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TokenizedDataset:
    name: str
    language: str
    weight: float
    tokens: list[np.ndarray]  # one per conversation, at most seq_len long
    masks: list[np.ndarray]  # True on assistant tokens


PROGRESS_EVERY_S = 10.0  # a progress line at most this often while one dataset tokenizes


def tokenize_dataset(spec: Any, tokenizer: Any, seq_len: int, default_system: str, overlong: str) -> TokenizedDataset:
    """Read, render and tokenize one sft.datasets entry; conversations left without answer tokens are dropped."""
    tokens, masks, cut, dropped = [], [], 0, 0
    conversations = load_conversations(spec, default_system)
    last = time.monotonic()
    for n, conv in enumerate(conversations, 1):
        ids, mask = tokenize_conversation(tokenizer, conv)
        if time.monotonic() - last > PROGRESS_EVERY_S:  # the chat template renders each turn: seconds per 1,000
            log.info("sft dataset %s: %d/%d conversations tokenized", spec.name, n, len(conversations))
            last = time.monotonic()
        if len(ids) > seq_len:
            if overlong == "drop":
                dropped += 1
                continue
            ids, mask, cut = ids[:seq_len], mask[:seq_len], cut + 1
        if not mask[1:].any():
            dropped += 1
            continue
        tokens.append(ids)
        masks.append(mask)
    if cut or dropped:
        log.info("sft dataset %s: %d conversations cut to %d tokens, %d left out", spec.name, cut, seq_len, dropped)
    if not tokens:
        raise ConfigError(f"sft.datasets '{spec.name}': no conversation has an answer within train.seq_len={seq_len}")
    return TokenizedDataset(spec.name, spec.language or spec.name, float(spec.weight), tokens, masks)


def tokenize_datasets(cfg: Any, tokenizer: Any, seq_len: int) -> list[TokenizedDataset]:
    """Every sft.datasets entry, one progress line each (tokenizing is where SFT spends its first minute)."""
    specs, start = list(cfg.sft.datasets), time.monotonic()
    log.info("sft: reading and tokenizing %d chat datasets with the %s template", len(specs), cfg.sft.template)
    datasets = []
    for i, spec in enumerate(specs, 1):
        began = time.monotonic()
        d = tokenize_dataset(spec, tokenizer, seq_len, cfg.sft.system_prompt, cfg.sft.overlong)
        log.info("sft dataset %d/%d %s (%s): %d conversations, weight %g, %.1f s", i, len(specs), d.name,
                 d.language, len(d.tokens), d.weight, time.monotonic() - began)
        datasets.append(d)
    log.info("sft: %d conversations ready in %.1f s", sum(len(d.tokens) for d in datasets), time.monotonic() - start)
    return datasets


class SftSampler:
    """Global sample index -> Sample of packed conversations, a pure function of (seed, index)."""

    def __init__(self, datasets: list[TokenizedDataset], seq_len: int, seed: int, pad_id: int, pack: bool = True):
        datasets = [d for d in datasets if d.weight > 0]
        if not datasets:
            raise ConfigError("sft.datasets has no dataset with a positive weight")
        self.datasets, self.seq_len, self.seed, self.pad_id, self.pack = datasets, seq_len, seed, pad_id, pack
        weights = np.array([d.weight for d in datasets], dtype=np.float64)
        self.schedule = InterleavedSchedule(weights, [len(d.tokens) for d in datasets], seed, salts=(11, 12))
        self.weights = self.schedule.weights
        self._starts = [0]  # first conversation of each sequence, extended on demand

    def conversation(self, j: int) -> tuple[int, int]:
        """(dataset, conversation) at position `j` of the run's conversation stream."""
        return self.schedule.locate(j)

    def _length(self, j: int) -> int:
        d, c = self.conversation(j)
        return len(self.datasets[d].tokens[c])

    def span(self, index: int) -> tuple[int, int]:
        """Conversations [first, end) of the stream that make up sample `index`."""
        while len(self._starts) <= index + 1:
            j, used = self._starts[-1], 0
            while True:
                n = self._length(j)
                if used and (not self.pack or used + n > self.seq_len):
                    break
                used, j = used + n, j + 1
            self._starts.append(j)
        return self._starts[index], self._starts[index + 1]

    def __getitem__(self, index: int) -> Sample:
        first, end = self.span(index)
        parts = [self.conversation(j) for j in range(first, end)]
        return pack_conversations([(self.datasets[d].tokens[c], self.datasets[d].masks[c], self.datasets[d].language)
                                   for d, c in parts], self.seq_len, self.pad_id)


def pack_conversations(convs: list[tuple[np.ndarray, np.ndarray, str]], seq_len: int, pad_id: int) -> Sample:
    """Conversations laid end to end and padded: labels only on answer tokens, positions restart per conversation.

    Padding is its own document (positions restart there too) with ignored labels, so no real token
    attends to it and nothing is learnt from it.
    """
    ids, labels, positions, languages = [], [], [], {}
    for tokens, mask, language in convs:
        target = np.where(mask[1:], tokens[1:], IGNORE)
        ids.append(tokens)
        labels.append(np.append(target, IGNORE))  # the last token predicts nothing across the boundary
        positions.append(np.arange(len(tokens)))
        languages[language] = languages.get(language, 0) + int(mask[1:].sum())
    pad = seq_len - sum(len(t) for t in ids)
    if pad < 0:
        raise ValueError(f"conversations of {seq_len - pad} tokens do not fit in {seq_len}")
    ids.append(np.full(pad, pad_id, dtype=np.int64))
    labels.append(np.full(pad, IGNORE, dtype=np.int64))
    positions.append(np.arange(pad))
    return Sample(np.concatenate(ids).astype(np.int64), np.concatenate(labels).astype(np.int64),
                  np.concatenate(positions).astype(np.int64), languages)


def sft_input_files(cfg: Any) -> list[str]:
    """Every data file the sft datasets read, for the stage manifest's inputs."""
    return [str(p) for spec in cfg.sft.datasets for p in expand_paths(list(spec.paths), spec.name)]


def build_sft_sampler(cfg: Any, tokenizer: Any, seq_len: int | None = None) -> SftSampler:
    """The sampler `train.mode: sft` trains on, in place of the packed-shard sampler.

    Sets the chat template on `tokenizer` (cfg.sft.template) first; that may add tokens, so build or
    resize the model to len(tokenizer) after this call.
    """
    if not cfg.sft.datasets:
        raise ConfigError("train.mode is sft but sft.datasets is empty; list chat datasets under sft.datasets")
    if cfg.sft.overlong not in ("truncate", "drop"):
        raise ConfigError(f"sft.overlong must be 'truncate' or 'drop', got '{cfg.sft.overlong}'")
    seq_len = int(seq_len or cfg.train.seq_len)
    prepare_tokenizer(tokenizer, cfg.sft.template)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    datasets = tokenize_datasets(cfg, tokenizer, seq_len)
    return SftSampler(datasets, seq_len, int(cfg.run.seed), int(pad_id), bool(cfg.sft.pack))
