"""Language and variety identification: en, zh-Hans, zh-Hant, yue, mixed, other.

Script statistics (Han incl. CJK Extensions A-H, Latin, kana, other scripts) pick the family; OpenCC's
character tables tell Simplified from Traditional; a shipped character naive Bayes over Han unigrams and
bigrams (resources/yue_nb.tsv, rebuilt by build_langid.py; listed Cantonese markers and words weigh in
as n-grams of their own) tells yue. `explain` names the n-grams that decided.
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
        en_function=frozenset(read_list("en_function_words.txt")),
        classes=_class_table(trad_only, simp_only),
        fold=fold,
    )


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# Han n-gram keys: a unigram is its (folded) code point; a bigram is BIGRAM_OFFSET + a * 2**21 + b.
BIGRAM_OFFSET = 1 << 42
MODEL_FILE = "yue_nb.tsv"
# 係 (Cantonese "to be") folds to 系, which Mandarin writes in 关系 and 系统: keep it apart.
KEEP_UNFOLDED = ord("係")


def ngram_keys(points: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Unigram and adjacent-pair keys of the Han characters, folded to Simplified (script is not evidence),
    except 係."""
    lex = lexicon()
    han = ((lex.classes[points] if classes is None else classes) & HAN_BIT) != 0
    folded = lex.fold[points].astype(np.int64)
    folded[points == KEEP_UNFOLDED] = KEEP_UNFOLDED
    pairs = han[:-1] & han[1:]
    bigrams = BIGRAM_OFFSET + (folded[:-1][pairs] << 21) + folded[1:][pairs]
    return np.concatenate([folded[han], bigrams])


def key_text(key: int) -> str:
    if key < BIGRAM_OFFSET:
        return chr(key)
    key -= BIGRAM_OFFSET
    return chr(key >> 21) + chr(key & 0x1FFFFF)


def _text_key(ngram: str) -> int:
    if len(ngram) == 1:
        return ord(ngram)
    return BIGRAM_OFFSET + (ord(ngram[0]) << 21) + ord(ngram[1])


@dataclass
class NgramModel:
    """Unigram weights in a dense table by code point; bigrams in a small open-addressing hash table
    (one vectorised probe per step, as many steps as the longest probe chain of the build). Both stay in
    the CPU cache, which a binary search over all n-grams per document did not make use of."""

    unigrams: np.ndarray  # float32 weight per (folded) code point below UNIGRAM_LIMIT
    keys: np.ndarray  # int64 bigram key per slot, -1 where empty
    weights: np.ndarray  # float32 bigram weight per slot, Cantonese positive
    probes: int
    by_text: dict  # n-gram text (folded) -> weight, for short texts (a dict lookup beats numpy's overhead)
    fold: dict  # str.translate table: Traditional -> Simplified, 係 kept


UNIGRAM_LIMIT = 0x32400  # past CJK Extension H
TABLE_BITS = 17  # 131,072 slots for ~15,000 bigrams
_HASH = np.uint64(0x9E3779B97F4A7C15)


def _slots(keys: np.ndarray) -> np.ndarray:
    return ((keys.astype(np.uint64) * _HASH) >> np.uint64(64 - TABLE_BITS)).astype(np.int64)


@lru_cache(maxsize=1)
def ngram_model() -> NgramModel:
    """The shipped naive Bayes table (resources/yue_nb.tsv, rebuilt by build_langid.py)."""
    path = RESOURCES / MODEL_FILE
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    items = [(_text_key(g), float(w)) for g, w in rows]
    unigrams = np.zeros(UNIGRAM_LIMIT, dtype=np.float32)
    size = 1 << TABLE_BITS
    keys, weights, probes = np.full(size, -1, dtype=np.int64), np.zeros(size, dtype=np.float32), 1
    bigrams = [(k, w) for k, w in items if k >= BIGRAM_OFFSET]
    for key, weight in items:
        if key < BIGRAM_OFFSET and key < UNIGRAM_LIMIT:
            unigrams[key] = weight
    slots = _slots(np.array([k for k, _ in bigrams], dtype=np.int64)).tolist()
    for (key, weight), slot in zip(bigrams, slots, strict=True):
        step = 0
        while keys[(slot + step) % size] != -1:
            step += 1
        keys[(slot + step) % size], weights[(slot + step) % size] = key, weight
        probes = max(probes, step + 1)
    fold = {int(cp): int(lexicon().fold[cp]) for cp in np.nonzero(lexicon().fold != np.arange(TABLE_SIZE))[0]}
    fold.pop(KEEP_UNFOLDED, None)
    return NgramModel(unigrams, keys, weights, probes, {key_text(k): w for k, w in items}, fold)


def _bigram_weights(model: NgramModel, bigrams: np.ndarray) -> np.ndarray:
    """Linear probing, vectorised: a key leaves the search at its match or at an empty slot (most do at
    the first step: most bigrams of a text are not in the model)."""
    slots = _slots(bigrams)
    weights = np.zeros(len(bigrams), dtype=np.float32)
    active = np.arange(len(bigrams))
    for step in range(model.probes):
        idx = (slots[active] + step) & ((1 << TABLE_BITS) - 1)
        found = model.keys[idx]
        hit = found == bigrams[active]
        weights[active[hit]] = model.weights[idx[hit]]
        active = active[(found != -1) & ~hit]
        if not len(active):
            break
    return weights


def _split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bigram = keys >= BIGRAM_OFFSET
    return keys[~bigram], keys[bigram]


SHORT_TEXT = 160  # code points; below this a Python loop over dict lookups is faster than numpy
# Evidence is read from the first SCORE_LIMIT code points: by then the sum is decisive (tens of units
# past the threshold on real documents), and the cost no longer grows with the document.
SCORE_LIMIT = 3000


def yue_score(points: np.ndarray, classes: np.ndarray | None = None, text: str = "") -> float:
    """Sum of the weights of the known n-grams: positive is Cantonese. (Model keys are Han n-grams only,
    so a lookup of anything else, or of a pair across a non-Han character, simply finds nothing.)"""
    model = ngram_model()
    if text and len(points) < SHORT_TEXT:
        folded, table = text.translate(model.fold), model.by_text
        return sum(table.get(c, 0.0) for c in folded) + sum(table.get(folded[i:i + 2], 0.0)
                                                            for i in range(len(folded) - 1))
    unigrams, bigrams = _split_keys(ngram_keys(points[:SCORE_LIMIT], None if classes is None else classes[:SCORE_LIMIT]))
    score = float(model.unigrams[np.minimum(unigrams, UNIGRAM_LIMIT - 1)].sum())
    return score + float(_bigram_weights(model, bigrams).sum()) if len(bigrams) else score


def ngram_evidence(points: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the n-grams of `points` that the model knows, and their weights."""
    model = ngram_model()
    keys = ngram_keys(points, classes)
    weights = np.where(keys < BIGRAM_OFFSET, model.unigrams[np.minimum(keys, UNIGRAM_LIMIT - 1)], 0).astype(np.float32)
    bigram = keys >= BIGRAM_OFFSET
    weights[bigram] = _bigram_weights(model, keys[bigram])
    known = weights != 0
    return keys[known], weights[known]


def explain(text: str, top: int = 6) -> str:
    """The n-grams that weighed most for (+) and against (-) Cantonese, e.g. '+嘅 2.9, +喺 2.7, -的 1.1'."""
    keys, weights = ngram_evidence(codepoints(text))
    total: dict[int, float] = {}
    for k, w in zip(keys.tolist(), weights.tolist(), strict=True):
        total[k] = total.get(k, 0.0) + w
    best = sorted(total.items(), key=lambda kv: -abs(kv[1]))[:top]
    return ", ".join(f"{'+' if w > 0 else '-'}{key_text(k)} {abs(w):.1f}" for k, w in best)


def fold_codepoints(points: np.ndarray) -> np.ndarray:
    """Character-level Traditional -> Simplified fold (OpenCC's first candidate); for dedup keys only."""
    return lexicon().fold[points]


def fold_to_simplified(text: str) -> str:
    return fold_codepoints(codepoints(text)).tobytes().decode("utf-32-le")


def script_counts(text: str) -> dict[str, int]:
    """Han, kana, other-script, Traditional-only and Simplified-only character counts."""
    return _counts(codepoints(text))


COUNTED = (("han", HAN_BIT), ("kana", KANA_BIT), ("other", OTHER_BIT), ("trad", TRAD_BIT), ("simp", SIMP_BIT))
# Class-byte value -> which counted bits it has: one histogram and one product count all five at once.
_BIT_MATRIX = np.array([[1 if v & bit else 0 for _, bit in COUNTED] for v in range(32)], dtype=np.int64)


def _counts(points: np.ndarray, classes: np.ndarray | None = None) -> dict[str, int]:
    if classes is None:
        classes = lexicon().classes[points]
    totals = np.bincount(classes, minlength=32)[:32] @ _BIT_MATRIX
    return {name: int(n) for (name, _), n in zip(COUNTED, totals.tolist(), strict=True)}


@dataclass
class LangResult:
    language: str
    han: int = 0
    latin_words: int = 0
    # Sum of the naive Bayes n-gram weights: positive is Cantonese, negative Mandarin (Chinese text only).
    yue_score: float = 0.0
    # The source's language hint decided the label (no evidence either way, or too few letters).
    hinted: bool = False
    paragraphs: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return self.han + self.latin_words

    @property
    def weight(self) -> int:
        # An English word carries about as much as two Chinese characters (translations run ~1:2).
        return self.han + 2 * self.latin_words


# Not prose: TeX math and commands, fenced and inline code. Their Latin words say nothing of the language.
NOT_PROSE = re.compile(
    r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]"
    r"|\\begin\{(\w+\*?)\}.*?\\end\{\1\}|\\[A-Za-z]+\*?(?:\{[^{}\n]*\})*",
    re.DOTALL,
)
_MARKUP_HINT = re.compile(r"[`$\\]")
JAPANESE_SEGMENT_KANA = 0.2
SEGMENT = re.compile(r"[^。！？!?\n]+")


def prose(text: str) -> str:
    """Text without TeX and code spans (only when it has a backquote, dollar or backslash: cheap)."""
    return NOT_PROSE.sub(" ", text) if _MARKUP_HINT.search(text) else text


def _japanese_dominates(text: str) -> bool:
    """Japanese when sentences with kana (at least JAPANESE_SEGMENT_KANA of their Han + kana) hold most of
    the Han and kana: a Chinese article quoting Japanese names or titles stays Chinese."""
    japanese = total = 0
    for seg in SEGMENT.findall(text):
        c = script_counts(seg)
        letters = c["han"] + c["kana"]
        total += letters
        if c["kana"] >= JAPANESE_SEGMENT_KANA * letters and c["kana"] > 0:
            japanese += letters
    return japanese > 0.5 * total


def _chinese_variety(text: str, points: np.ndarray, classes: np.ndarray, counts: dict[str, int], opts,
                     hint: str | None, result: LangResult) -> str:
    """yue when the n-gram evidence passes opts.yue_threshold; else Simplified or Traditional by script.

    A hint decides only what the evidence leaves open: `yue` unless the text is clearly Mandarin,
    `zh-Hant`/`zh-Hans` when the script is neutral."""
    score = result.yue_score = yue_score(points, classes, text)
    if score >= opts.yue_threshold:
        return "yue"
    if hint == "yue" and score > -opts.yue_threshold:
        result.hinted = True
        return "yue"
    trad, simp = counts["trad"], counts["simp"]
    if trad == simp:
        result.hinted = hint in ("zh-Hant", "zh-Hans")
        return hint if result.hinted else opts.neutral_script
    return "zh-Hant" if trad > simp else "zh-Hans"


@lru_cache(maxsize=1)
def en_common_words() -> frozenset:
    """Common English words (resources/en_common_words.txt, written by build_langid.py)."""
    return frozenset(read_list("en_common_words.txt"))


def _latin_language(words: list[str], opts) -> str:
    """English by its share of function words; a short sentence needs only one, or mostly common
    English words (a gloss such as "Depart Seattle.")."""
    lower = [w.lower() for w in words]
    hits = sum(1 for w in lower if w in lexicon().en_function)
    if len(words) <= opts.short_latin_words:
        common = sum(1 for w in lower if w in en_common_words())
        return "en" if hits >= 1 or common >= opts.short_en_common_share * len(words) else "other"
    return "en" if hits >= opts.en_function_word_share * len(words) else "other"


def classify_block(text: str, opts, hint: str | None = None, variety: bool = True) -> LangResult:
    """One label for a block of text; `undecided` when it has fewer than opts.min_letters letters, unless
    they are Han with Cantonese evidence of at least opts.short_yue_score (a one-word reply such as 唔該).
    With variety=False, Chinese is labelled `zh` without telling yue, zh-Hans and zh-Hant apart."""
    text = prose(text)
    points = codepoints(text)
    classes = lexicon().classes[points]
    counts = _counts(points, classes)
    han, kana, other = counts["han"], counts["kana"], counts["other"]
    word_list = LATIN_WORD.findall(text)
    words = len(word_list)
    total = han + words + kana + other
    result = LangResult("undecided", han=han, latin_words=words)
    if total < opts.min_letters:
        if variety and han and han == total:
            result.yue_score = yue_score(points, classes, text)
            if result.yue_score >= opts.short_yue_score:
                result.language = "yue"
        return result
    if kana >= 3 and _japanese_dominates(text):
        result.language = "other"
    elif han + kana >= opts.han_share * total:
        result.language = _chinese_variety(text, points, classes, counts, opts, hint, result) if variety else "zh"
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
    result = classify_block(text, opts, hint)
    if result.language == "undecided":
        result.language = hint or "other"
        result.hinted = hint is not None
        return result
    if min(result.han, result.latin_words) < 0.1 * result.units or "\n" not in text:
        return result
    shares: dict[str, int] = {}
    blocks = []
    for para in text.split("\n"):
        block = classify_block(para, opts, hint, variety=False)  # the family is enough to tell `mixed`
        if block.language == "undecided":
            continue
        blocks.append((para, block.language))
        family = _family(block.language)
        shares[family] = shares.get(family, 0) + block.weight
    total = sum(shares.values()) or 1
    if len([s for s in shares.values() if s >= opts.mixed_share * total]) >= 2:
        result.language = "mixed"
        result.paragraphs = [classify_block(p, opts, hint).language if lang == "zh" else lang for p, lang in blocks]
    return result
