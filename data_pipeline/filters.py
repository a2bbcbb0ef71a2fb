"""Quality filters that work on text without spaces: each returns a removal reason or None.

Thresholds come per language from `data.filters.<language>` (see triglot/config/data.py for their sources).
CJK text is measured in characters, English in words.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from triglot.data_pipeline.dedup import ngram_hashes
from triglot.data_pipeline.langid import HAN, LATIN_WORD, codepoints, read_list

SYMBOL = re.compile(r"[#…•|★☆■□►▶◆◇●○※→←]|\.\.\.")
DIGIT = re.compile(r"\d")
# Line-final punctuation, allowing closing quotes and brackets after it: 。」 ！』 ." ?) and so on.
TERMINAL = re.compile(r"[.!?。！？…;；]['\"」』”’）)\]】》〉]*\s*$")
CHINESE = ("zh-Hans", "zh-Hant", "yue")


@lru_cache(maxsize=1)
def boilerplate_pattern() -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in read_list("boilerplate.txt")), re.IGNORECASE)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def length(text: str, lang: str, t) -> str | None:
    n = len(text)
    if n < t.min_chars:
        return "too_short"
    if n > t.max_chars:
        return "too_long"
    return None


def symbols(text: str, lang: str, t) -> str | None:
    units = len(HAN.findall(text)) + len(LATIN_WORD.findall(text))
    if len(SYMBOL.findall(text)) > t.max_symbol_ratio * max(units, 1):
        return "symbol_ratio"
    visible = len(text) - text.count(" ") - text.count("\n")
    if len(DIGIT.findall(text)) > t.max_digit_ratio * max(visible, 1):
        return "digit_ratio"
    return None


def duplicate_lines(text: str, lang: str, t) -> str | None:
    lines = _lines(text)
    if len(lines) >= 3:
        seen: set[str] = set()
        dup_count = dup_chars = 0
        for line in lines:
            if line in seen:
                dup_count += 1
                dup_chars += len(line)
            seen.add(line)
        if dup_count > t.max_dup_line_fraction * len(lines):
            return "dup_lines"
        if dup_chars > t.max_dup_line_char_fraction * sum(map(len, lines)):
            return "dup_line_chars"
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    if len(paras) >= 3 and len(paras) - len(set(paras)) > t.max_dup_para_fraction * len(paras):
        return "dup_paragraphs"
    return None


def top_ngrams(text: str, lang: str, t) -> str | None:
    """Gopher's top n-gram share: word 2/3/4-grams for English, character 3/4/5-grams for Chinese; the
    share is the characters covered by the most frequent n-gram's occurrences over all characters."""
    if lang in CHINESE or (lang == "mixed" and len(HAN.findall(text)) > len(LATIN_WORD.findall(text))):
        ids = codepoints(re.sub(r"\s+", "", text))
        lengths, sizes, floor = np.ones(len(ids), dtype=np.int64), (3, 4, 5), 100
    else:
        words = LATIN_WORD.findall(text.lower())
        ids = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
        lengths, sizes, floor = np.fromiter(map(len, words), dtype=np.int64, count=len(words)), (2, 3, 4), 50
    if len(ids) < floor:  # Gopher applies it to documents of 50+ words; ~100 CJK characters
        return None
    total = int(lengths.sum())
    for n, limit in zip(sizes, t.max_top_ngram_share, strict=False):
        hashes = ngram_hashes(ids, n)
        _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] * int(lengths[first[top]:first[top] + n].sum()) > limit * total:
            return f"top_{n}gram"
    return None


def terminal_punct(text: str, lang: str, t) -> str | None:
    lines = _lines(text)
    if len(lines) < t.punct_min_lines:
        return None
    ended = sum(1 for line in lines if TERMINAL.search(line))
    return "terminal_punct" if ended < t.min_terminal_punct_lines * len(lines) else None


def boilerplate(text: str, lang: str, t) -> str | None:
    lines = _lines(text)
    pattern = boilerplate_pattern()
    hits = sum(1 for line in lines if len(line) <= 300 and pattern.match(line))
    return "boilerplate" if lines and hits > t.max_boilerplate_lines * len(lines) else None


def alpha_words(text: str, lang: str, t) -> str | None:
    if lang != "en":
        return None
    words = text.split()
    with_letter = sum(1 for w in words if any(c.isalpha() for c in w))
    return "alpha_words" if words and with_letter < t.min_alpha_word_ratio * len(words) else None


# Order matters only for which reason a document is reported under: cheap checks first.
FILTERS: dict[str, Callable[[str, str, object], str | None]] = {
    "length": length,
    "symbols": symbols,
    "boilerplate": boilerplate,
    "duplicate_lines": duplicate_lines,
    "terminal_punct": terminal_punct,
    "alpha_words": alpha_words,
    "top_ngrams": top_ngrams,
}


def quality_reason(text: str, lang: str, thresholds, disabled: list[str] = ()) -> str | None:
    """First failing filter's reason, or None when the document passes them all."""
    for name, check in FILTERS.items():
        if name in disabled:
            continue
        reason = check(text, lang, thresholds)
        if reason:
            return reason
    return None
