"""Language and variety identification without a model: en, zh-Hans, zh-Hant, yue, mixed, other.

Script statistics (Han incl. CJK Extensions A-G, Latin, kana, other scripts) pick the family; OpenCC's
character tables tell Simplified from Traditional; Cantonese-only versus Mandarin-only markers tell yue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import opencc

RESOURCES = Path(__file__).resolve().parent / "resources"

HAN_RANGES = (
    "\u3400-\u4dbf"  # Extension A
    "\u4e00-\u9fff"  # Unified Ideographs
    "\uf900-\ufaff"  # Compatibility Ideographs
    "\U00020000-\U0002a6df"  # Extension B
    "\U0002a700-\U0002ebef"  # Extensions C, D, E, F
    "\U0002f800-\U0002fa1f"  # Compatibility Supplement
    "\U00030000-\U000323af"  # Extensions G, H
)
HAN = re.compile(f"[{HAN_RANGES}]")
LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:'[A-Za-z]+)?")
KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
# Scripts other than Han, Latin and kana: Hangul, Cyrillic, Greek, Arabic, Hebrew, Indic, Thai.
OTHER_SCRIPT = re.compile("[\uac00-\ud7af\u1100-\u11ff\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u0e00-\u0e7f]")
def read_list(name: str) -> list[str]:
    """Entries of a resource list: one per line, '#' starts a comment line."""
    lines = (RESOURCES / name).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def _alternation(words: list[str]) -> re.Pattern:
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))


def _opencc_table(name: str) -> dict[str, list[str]]:
    path = Path(opencc.__file__).resolve().parent / "dictionary" / name
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, values = line.partition("\t")
        if key and values:
            table[key] = values.split()
    return table


# Per-code-point class bits: counting with a numpy table lookup is far cheaper than regexes or translate.
HAN_BIT, KANA_BIT, OTHER_BIT, TRAD_BIT, SIMP_BIT = 1, 2, 4, 8, 16
TABLE_SIZE = 0x110000


@dataclass
class Lexicon:
    yue: re.Pattern
    yue_exceptions: re.Pattern
    mandarin: re.Pattern
    en_function: frozenset
    classes: np.ndarray  # uint8 class bits per code point
    fold: np.ndarray  # uint32 code point -> its Simplified form (itself when none)


def _class_table(trad_only: list[str], simp_only: list[str]) -> np.ndarray:
    table = np.zeros(TABLE_SIZE, dtype=np.uint8)
    for bit, pattern in ((HAN_BIT, HAN), (KANA_BIT, KANA), (OTHER_BIT, OTHER_SCRIPT)):
        for lo, hi in re.findall(r"(\\?[^-\\]|\\U[0-9a-f]{8}|\\u[0-9a-f]{4})-(\\?[^-\\]|\\U[0-9a-f]{8}|\\u[0-9a-f]{4})",
                                 pattern.pattern):
            table[ord(lo):ord(hi) + 1] |= bit
    table[[ord(c) for c in trad_only]] |= TRAD_BIT
    table[[ord(c) for c in simp_only]] |= SIMP_BIT
    return table


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """Marker patterns and OpenCC character sets, built once per process."""
    t2s, s2t = _opencc_table("TSCharacters.txt"), _opencc_table("STCharacters.txt")
    trad_only = sorted(k for k, v in t2s.items() if len(k) == 1 and k not in v)
    simp_only = sorted(k for k, v in s2t.items() if len(k) == 1 and k not in v)
    fold = np.arange(TABLE_SIZE, dtype=np.uint32)
    for k, v in t2s.items():
        if len(k) == 1 and len(v[0]) == 1:
            fold[ord(k)] = ord(v[0])
    return Lexicon(
        yue=_alternation(read_list("yue_markers.txt")),
        yue_exceptions=_alternation(read_list("yue_marker_exceptions.txt")),
        mandarin=_alternation(read_list("mandarin_markers.txt")),
        en_function=frozenset(read_list("en_function_words.txt")),
        classes=_class_table(trad_only, simp_only),
        fold=fold,
    )


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def fold_codepoints(points: np.ndarray) -> np.ndarray:
    """Character-level Traditional -> Simplified fold (OpenCC's first candidate); for dedup keys only."""
    return lexicon().fold[points]


def fold_to_simplified(text: str) -> str:
    return fold_codepoints(codepoints(text)).tobytes().decode("utf-32-le")


def script_counts(text: str) -> dict[str, int]:
    """Han, kana, other-script, Traditional-only and Simplified-only character counts."""
    classes = lexicon().classes[codepoints(text)]
    return {name: int(np.count_nonzero(classes & bit)) for name, bit in
            (("han", HAN_BIT), ("kana", KANA_BIT), ("other", OTHER_BIT), ("trad", TRAD_BIT), ("simp", SIMP_BIT))}


@dataclass
class LangResult:
    language: str
    han: int = 0
    latin_words: int = 0
    yue_markers: int = 0
    mandarin_markers: int = 0
    paragraphs: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return self.han + self.latin_words

    @property
    def weight(self) -> int:
        # An English word carries about as much as two Chinese characters (translations run ~1:2).
        return self.han + 2 * self.latin_words


def _chinese_variety(text: str, counts: dict[str, int], opts) -> tuple[str, int, int]:
    lex = lexicon()
    yue = len(lex.yue.findall(text)) - len(lex.yue_exceptions.findall(text))
    mandarin = len(lex.mandarin.findall(text))
    if yue > 0 and yue >= opts.yue_over_mandarin * mandarin:
        return "yue", yue, mandarin
    trad, simp = counts["trad"], counts["simp"]
    if trad == simp:
        return opts.neutral_script, yue, mandarin
    return ("zh-Hant" if trad > simp else "zh-Hans"), yue, mandarin


def _latin_language(words: list[str], opts) -> str:
    function = lexicon().en_function
    hits = sum(1 for w in words if w.lower() in function)
    return "en" if hits >= opts.en_function_word_share * len(words) else "other"


def classify_block(text: str, opts) -> LangResult:
    """One label for a block of text; `undecided` when it has fewer than opts.min_letters letters."""
    counts = script_counts(text)
    han, kana, other = counts["han"], counts["kana"], counts["other"]
    word_list = LATIN_WORD.findall(text)
    words = len(word_list)
    total = han + words + kana + other
    result = LangResult("undecided", han=han, latin_words=words)
    if total < opts.min_letters:
        return result
    if kana >= 0.1 * (han + kana) and kana >= 3:
        result.language = "other"  # Japanese: kana among the Han characters
    elif han >= opts.han_share * total:
        result.language, result.yue_markers, result.mandarin_markers = _chinese_variety(text, counts, opts)
    elif words >= opts.latin_share * total:
        result.language = _latin_language(word_list, opts)
    elif other >= 0.5 * total:
        result.language = "other"
    else:
        result.language = "mixed"
    return result


def _family(language: str) -> str:
    return "zh" if language in ("zh-Hans", "zh-Hant", "yue") else language


def identify(text: str, opts, hint: str | None = None) -> LangResult:
    """Document label; texts with both Han and Latin paragraphs are checked paragraph by paragraph."""
    result = classify_block(text, opts)
    if result.language == "undecided":
        result.language = hint or "other"
        return result
    if min(result.han, result.latin_words) < 0.1 * result.units or "\n" not in text:
        return result
    shares: dict[str, int] = {}
    for para in text.split("\n"):
        block = classify_block(para, opts)
        if block.language == "undecided":
            continue
        result.paragraphs.append(block.language)
        family = _family(block.language)
        shares[family] = shares.get(family, 0) + block.weight
    total = sum(shares.values()) or 1
    if len([s for s in shares.values() if s >= opts.mixed_share * total]) >= 2:
        result.language = "mixed"
    return result
