"""DPO training rows: preference pairs tokenized with the SFT chat template, labels only on the answer, packed.

A row holds whole pairs, chosen then rejected, each its own document (positions restart), so no attention
crosses between answers; `segments` names the sequence (2k chosen, 2k+1 rejected) each token belongs to.
Sample `i` is a pure function of (seed, i), as in SFT: the pair stream is SftSampler's, cut the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from triglot.train.data import IGNORE, Sample
from triglot.train.dpo.formats import Pair, load_pairs
from triglot.train.sft.data import SftSampler
from triglot.train.sft.formats import expand_paths
from triglot.train.sft.templates import assistant_char_spans, prepare_tokenizer

from triglot.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TokenizedPairs:
    name: str
    language: str
    weight: float
    tokens: list[tuple[np.ndarray, np.ndarray]]  # (chosen, rejected) sequences of each pair
    masks: list[tuple[np.ndarray, np.ndarray]]  # True on the answer's tokens
    bad: Counter = field(default_factory=Counter)  # records left out, by reason
    reference: np.ndarray | None = None  # [pairs, 2] reference log-probs (chosen, rejected)


@dataclass
class PairSample(Sample):
    segments: np.ndarray = None  # [seq_len] 2k / 2k+1 on pair k's chosen / rejected tokens, -1 on padding
    reference: np.ndarray = None  # [pairs, 2]; zeros while none is known
    pairs: int = 0


def tokenize_answer(tokenizer: Any, prompt: list[dict], answer: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of prompt + answer rendered by the chat template, and a mask True on the answer's tokens only."""
    text, spans = assistant_char_spans(tokenizer, [*prompt, {"role": "assistant", "content": answer}])
    a, b = spans[-1]  # earlier assistant turns are context, not the answer being compared
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    mask = (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
    return ids, mask


def fit(ids: np.ndarray, mask: np.ndarray, budget: int, keep_prompt: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sequence to `budget` tokens: the prompt's first tokens go, down to `keep_prompt`, then the answer's last."""
    if len(ids) <= budget:
        return ids, mask
    start = int(np.argmax(mask))  # the answer's first token
    keep = min(start, keep_prompt)
    ids, mask = ids[start - keep:], mask[start - keep:]
    return ids[:budget], mask[:budget]


def tokenize_pair(tokenizer: Any, pair: Pair, budget: int, overlong: str) -> tuple[list, list] | str:
    """(sequences, masks) of the pair within `budget` tokens each, or the reason it is left out."""
    seqs = [tokenize_answer(tokenizer, pair.prompt, answer) for answer in (pair.chosen, pair.rejected)]
    if not all(m[1:].any() for _, m in seqs):
        return "no answer tokens"
    if any(len(ids) > budget for ids, _ in seqs):
        if overlong == "drop":
            return "longer than train.seq_len"
        # The same prompt length for both answers: both are judged on the same context.
        longest = max(len(ids) - int(np.argmax(m)) for ids, m in seqs)
        keep = max(budget - longest, budget // 2)
        seqs = [fit(ids, m, budget, keep) for ids, m in seqs]
    if not all(m[1:].any() for _, m in seqs):
        return "no answer tokens"
    return [s[0] for s in seqs], [s[1] for s in seqs]


def tokenize_pairs(spec: Any, tokenizer: Any, seq_len: int, default_system: str, overlong: str) -> TokenizedPairs:
    """Read and tokenize one dpo.datasets entry; every record left out is counted by reason."""
    bad: Counter = Counter()
    tokens, masks = [], []
    for pair in load_pairs(spec, default_system, bad):
        out = tokenize_pair(tokenizer, pair, seq_len // 2, overlong)
        if isinstance(out, str):
            bad[out] += 1
            continue
        tokens.append(tuple(out[0]))
        masks.append(tuple(out[1]))
    if bad:
        log.warning("dpo dataset %s: %d records left out (%s)", spec.name, sum(bad.values()),
                    ", ".join(f"{reason}: {n}" for reason, n in sorted(bad.items())))
    if not tokens:
        raise ConfigError(f"dpo.datasets '{spec.name}': no usable preference pair in {list(spec.paths)} "
                          f"({dict(bad)}); check its format, fields and train.seq_len")
    return TokenizedPairs(spec.name, spec.language or spec.name, float(spec.weight), tokens, masks, bad)


class DpoSampler(SftSampler):
    """Global sample index -> PairSample of packed pairs, a pure function of (seed, index)."""

    def _length(self, j: int) -> int:
        d, c = self.conversation(j)
        chosen, rejected = self.datasets[d].tokens[c]
        return len(chosen) + len(rejected)

    def __getitem__(self, index: int) -> PairSample:
        first, end = self.span(index)
        return pack_pairs(self.datasets, [self.conversation(j) for j in range(first, end)], self.seq_len, self.pad_id)

    def collate(self, samples: list[PairSample]) -> dict:
        """The Prefetcher stacks this sampler's rows with this."""
        return collate_pairs(samples)


def pack_pairs(datasets: list[TokenizedPairs], parts: list[tuple[int, int]], seq_len: int, pad_id: int) -> PairSample:
    """Pairs (dataset, pair) laid end to end, chosen then rejected, and padded; labels only on answer tokens."""
    ids, labels, positions, segments, reference, languages = [], [], [], [], [], {}
    for k, (d, c) in enumerate(parts):
        data = datasets[d]
        for side in (0, 1):
            tokens, mask = data.tokens[c][side], data.masks[c][side]
            ids.append(tokens)
            labels.append(np.append(np.where(mask[1:], tokens[1:], IGNORE), IGNORE))
            positions.append(np.arange(len(tokens)))
            segments.append(np.full(len(tokens), 2 * k + side))
            languages[data.language] = languages.get(data.language, 0) + int(mask[1:].sum())
        reference.append(data.reference[c] if data.reference is not None else np.zeros(2))
    pad = seq_len - sum(len(t) for t in ids)
    if pad < 0:
        raise ValueError(f"pairs of {seq_len - pad} tokens do not fit in {seq_len}")
    ids.append(np.full(pad, pad_id))
    labels.append(np.full(pad, IGNORE))
    positions.append(np.arange(pad))
    segments.append(np.full(pad, -1))
    cat = [np.concatenate(x).astype(np.int64) for x in (ids, labels, positions, segments)]
    return PairSample(cat[0], cat[1], cat[2], languages, cat[3], np.asarray(reference, dtype=np.float64), len(parts))


def collate_pairs(samples: list[PairSample]) -> dict:
    """A micro-batch: the rows stacked, segments numbered across the whole micro-batch, references stacked."""
    import torch

    languages: dict[str, int] = {}
    segments, offset = [], 0
    for s in samples:
        for lang, n in s.languages.items():
            languages[lang] = languages.get(lang, 0) + n
        segments.append(np.where(s.segments >= 0, s.segments + 2 * offset, -1))
        offset += s.pairs
    return {
        "input_ids": torch.from_numpy(np.stack([s.input_ids for s in samples])),
        "labels": torch.from_numpy(np.stack([s.labels for s in samples])),
        "position_ids": torch.from_numpy(np.stack([s.position_ids for s in samples])),
        "segments": torch.from_numpy(np.stack(segments)),
        "reference": torch.from_numpy(np.concatenate([s.reference for s in samples]).reshape(-1, 2)),
        "pairs": offset,
        "languages": languages,
    }


def dpo_input_files(cfg: Any) -> list[str]:
    """Every data file the dpo datasets read, for the stage manifest's inputs."""
    return [str(p) for spec in cfg.dpo.datasets for p in expand_paths(list(spec.paths), spec.name)]


def build_dpo_sampler(cfg: Any, tokenizer: Any) -> DpoSampler:
    """The sampler DPO trains on. Sets the chat template on `tokenizer` first (that may add tokens)."""
    if not cfg.dpo.datasets:
        raise ConfigError("dpo.datasets is empty; list preference-pair datasets under dpo.datasets")
    if cfg.dpo.overlong not in ("truncate", "drop"):
        raise ConfigError(f"dpo.overlong must be 'truncate' or 'drop', got '{cfg.dpo.overlong}'")
    seq_len = int(cfg.train.seq_len)
    prepare_tokenizer(tokenizer, cfg.dpo.template)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    datasets = [tokenize_pairs(spec, tokenizer, seq_len, cfg.dpo.system_prompt, cfg.dpo.overlong)
                for spec in cfg.dpo.datasets]
    for d in datasets:
        log.info("dpo dataset %s (%s): %d pairs, weight %g", d.name, d.language, len(d.tokens), d.weight)
    return DpoSampler(datasets, seq_len, int(cfg.run.seed), int(pad_id), bool(cfg.dpo.pack))
