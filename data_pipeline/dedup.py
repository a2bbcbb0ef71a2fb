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
from triglot.data_pipeline.langid import LATIN_WORD, codepoints, fold_codepoints

_NOT_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")


def _hash8(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def exact_key(text: str) -> int:
    """64-bit hash of the text with case, whitespace and punctuation removed."""
    return _hash8(_NOT_WORD.sub("", text.casefold()).encode("utf-8"))


_MIX = np.uint64(0x9E3779B97F4A7C15)
_FMIX = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def fmix64(keys: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (wrapping uint64)."""
    shift, m1, m2 = _FMIX
    with np.errstate(over="ignore"):
        h = keys ^ (keys >> shift)
        h = h * m1
        h = h ^ (h >> shift)
        h = h * m2
        return h ^ (h >> shift)


def key_bucket(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Dedup partition of each 64-bit key (exact or band key): mixed, then modulo `partitions`."""
    return fmix64(keys) % np.uint64(partitions)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit hash per n-gram of `ids`, in order (vectorised polynomial hash, wrapping uint64)."""
    ids = ids.astype(np.uint64)
    grams = [ids] if len(ids) <= n else [ids[i:len(ids) - n + 1 + i] for i in range(n)]
    h = np.zeros(len(grams[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for g in grams:
            h = h * _MIX + g + np.uint64(1)
    return h


def shingle_hashes(text: str, chinese: bool, cjk_ngram: int, word_ngram: int) -> np.ndarray:
    """Hashes of character n-grams (spaces removed, folded to Simplified) for Chinese, word n-grams otherwise."""
    if chinese:
        return np.unique(ngram_hashes(fold_codepoints(codepoints(_SPACES.sub("", text.casefold()))), cjk_ngram))
    words = LATIN_WORD.findall(text.casefold()) or text.split()
    ids = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    return np.unique(ngram_hashes(ids, word_ngram))


@lru_cache(maxsize=4)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine permutation parameters (a, b) of datasketch's MinHash (scheme affine64) for this seed."""
    from datasketch import MinHash  # imported here: datasketch pulls in scipy, which the merge never needs

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine64").permutations
    return a.astype(np.uint64), b.astype(np.uint64)


def minhash_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signature, the same values as datasketch.MinHash(num_perm, seed, scheme='affine64') fed these
    64-bit shingle hashes: MurmurHash3 finaliser, then a*h + b mod 2^64, minimum per permutation.
    Vectorised over all shingles of a document at once."""
    a, b = permutations(num_perm, seed)
    if len(hashes) == 0:
        return np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (np.outer(fmix64(hashes), a) + b).min(axis=0)


@lru_cache(maxsize=4)
def _band_mixers(rows: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed + 7919).randint(1, 1 << 62, size=rows, dtype=np.uint64) | np.uint64(1)


def band_keys(text: str, chinese: bool, opts) -> bytes:
    """`opts.bands` 64-bit LSH band hashes of the text's MinHash signature, packed little-endian."""
    signature = minhash_signature(shingle_hashes(text, chinese, opts.cjk_ngram, opts.word_ngram),
                                  opts.num_perm, opts.seed)
    rows = signature[: opts.bands * opts.rows].reshape(opts.bands, opts.rows)
    with np.errstate(over="ignore"):
        keys = (rows * _band_mixers(opts.rows, opts.seed)).sum(axis=1, dtype=np.uint64)
    return keys.astype("<u8").tobytes()


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
