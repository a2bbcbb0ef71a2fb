"""Deduplication keys (computed in workers) and the global exact and near-duplicate pass (at merge).

Near-duplicate keys are MinHash LSH band hashes over shingles of the text folded Traditional -> Simplified,
so a Traditional text and its Simplified copy collide; the kept text itself is never converted.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from functools import lru_cache

import numpy as np
from datasketch import MinHash

from data_pipeline.langid import LATIN_WORD, fold_to_simplified

_NOT_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")


def _hash8(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def exact_key(text: str) -> int:
    """64-bit hash of the text with case, whitespace and punctuation removed."""
    return _hash8(_NOT_WORD.sub("", text.casefold()).encode("utf-8"))


def shingles(text: str, chinese: bool, cjk_ngram: int, word_ngram: int) -> list[bytes]:
    """Character n-grams (spaces removed, folded to Simplified) for Chinese, word n-grams otherwise."""
    if chinese:
        chars = _SPACES.sub("", fold_to_simplified(text.casefold()))
        n = cjk_ngram
        grams = {chars[i:i + n] for i in range(max(len(chars) - n + 1, 1))}
    else:
        words = LATIN_WORD.findall(text.casefold()) or text.split()
        n = word_ngram
        grams = {" ".join(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}
    return [g.encode("utf-8") for g in grams]


@lru_cache(maxsize=4)
def _template(num_perm: int, seed: int) -> MinHash:
    # CRC-32 as the base shingle hash: 32 bits like datasketch's default (SHA-1 prefix), several times faster.
    return MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)


def band_keys(text: str, chinese: bool, opts) -> bytes:
    """`opts.bands` 64-bit LSH band hashes of the text's MinHash signature, packed little-endian."""
    mh = _template(opts.num_perm, opts.seed).copy()  # reuses the permutations instead of redrawing them
    mh.update_batch(shingles(text, chinese, opts.cjk_ngram, opts.word_ngram))
    values = mh.hashvalues.astype("<u8")
    r = opts.rows
    keys = [_hash8(values[i * r:(i + 1) * r].tobytes()) for i in range(opts.bands)]
    return np.asarray(keys, dtype="<u8").tobytes()


def first_occurrence_mask(keys: np.ndarray) -> np.ndarray:
    """True where a key appears for the first time (in array order)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=bool)
    _, first = np.unique(keys, return_index=True)
    mask = np.zeros(len(keys), dtype=bool)
    mask[first] = True
    return mask


def duplicate_masks(exact: np.ndarray, bands: np.ndarray, use_exact: bool, use_near: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(exact duplicate, near duplicate) masks over documents in run order; the earliest copy is kept.

    A document is a near duplicate when it shares an LSH bucket (any band) with an earlier document
    that is not an exact duplicate.
    """
    n = len(exact)
    exact_dup = ~first_occurrence_mask(exact) if use_exact else np.zeros(n, dtype=bool)
    near_dup = np.zeros(n, dtype=bool)
    if use_near and n:
        alive = np.flatnonzero(~exact_dup)
        for b in range(bands.shape[1]):
            near_dup[alive] |= ~first_occurrence_mask(bands[alive, b])
    return exact_dup, near_dup
