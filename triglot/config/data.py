"""Data section: sources for the clean stage and its options (filters, PII, dedup, workers).

Every default of the clean stage lives here; configs/data/*.yaml hold only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

LANGUAGES = ("en", "zh-Hans", "zh-Hant", "yue", "mixed", "other")


@dataclass
class SourceSpec:
    name: str = "???"
    # Path globs, relative to the working directory unless absolute.
    paths: list[str] = field(default_factory=list)
    # jsonl, json, csv, tsv, text, parquet, wikiextractor, html, warc, wet
    format: str = "jsonl"
    # Field (jsonl/json/parquet, dotted for nested keys, e.g. metadata.body or turns.0.text) or column (csv/tsv).
    text_field: str = "text"
    # Several fields joined by a blank line (e.g. instruction, input, output); overrides text_field when set.
    text_fields: list[str] = field(default_factory=list)
    # Optional hint (en, zh-Hans, zh-Hant, yue): decides text with too few letters, Chinese text with no
    # Cantonese-or-Mandarin evidence either way (yue), and Chinese in a neutral script (zh-Hant, zh-Hans).
    language: Optional[str] = None
    license: str = "unknown"
    # Plain text only: one document per `line`, per blank-line `paragraph`, or the whole `file`.
    text_mode: str = "line"
    # json only: key holding the list of records when the file is an object rather than a list.
    records_field: str = ""
    # `documents`, or `sentences`: one sentence per record (speech transcripts, dictionary examples,
    # parallel corpora), which applies SENTENCE_FILTERS before this source's own `filters`.
    kind: str = "documents"
    # This source's filter settings over data.filters.<language>: any Thresholds key, e.g. {min_chars: 5}.
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Thresholds:
    """Quality thresholds for one language. Sources: Gopher (Rae et al. 2021, appendix A), C4 (Raffel et
    al. 2020) and RefinedWeb (Penedo et al. 2023), with CJK lengths counted in characters not words."""

    min_chars: int = 50
    max_chars: int = 200_000
    # Gopher: symbol-to-word ratio 0.1 for '#' and ellipsis; here per character over all non-space characters.
    max_symbol_ratio: float = 0.1
    max_digit_ratio: float = 0.3
    # Gopher repetition: duplicate lines 0.3 (by count), duplicate paragraphs 0.3, their characters 0.2.
    max_dup_line_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_dup_para_fraction: float = 0.3
    # Gopher top n-gram character share: 2-gram 0.20, 3-gram 0.18, 4-gram 0.16 (words for English,
    # characters for Chinese, where a CJK character n-gram is scaled up by one: 3,4,5).
    max_top_ngram_share: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])
    # C4: lines ending in terminal punctuation; applied when a document has at least `punct_min_lines` lines.
    min_terminal_punct_lines: float = 0.3
    punct_min_lines: int = 5
    # Boilerplate lines (cookie notices, "all rights reserved", 版權所有 ...) as a share of lines.
    max_boilerplate_lines: float = 0.4
    # Gopher: at least 80% of English words must contain a letter (does not apply to CJK).
    min_alpha_word_ratio: float = 0.8


# A sentence corpus: short records are the point, and one line has no line-level statistics to speak of.
SENTENCE_FILTERS: dict[str, Any] = {"min_chars": 4, "max_symbol_ratio": 0.2}
SOURCE_KINDS = ("documents", "sentences")


def _default_thresholds() -> dict[str, Thresholds]:
    cjk = dict(min_chars=20, max_top_ngram_share=[0.25, 0.22, 0.20])
    return {
        "en": Thresholds(),
        "zh-Hans": Thresholds(**cjk),
        "zh-Hant": Thresholds(**cjk),
        "yue": Thresholds(**cjk),
        "mixed": Thresholds(min_chars=30, max_top_ngram_share=[0.25, 0.22, 0.20]),
        "other": Thresholds(),
    }


@dataclass
class LangIdOptions:
    # Documents with fewer letters (Han characters + Latin words) are undecided and use the source's hint.
    min_letters: int = 3
    # Han share of letters at or above which a text is Chinese; Latin share at or above which it is Latin.
    han_share: float = 0.6
    latin_share: float = 0.6
    # Share of English function words among Latin words needed to call Latin text English.
    en_function_word_share: float = 0.12
    # Latin text of at most this many words is English with a single English function word, or when
    # this share of its words is among the common English words (resources/en_common_words.txt).
    short_latin_words: int = 8
    short_en_common_share: float = 0.6
    # Cantonese when the summed n-gram log ratios (resources/yue_nb.tsv) reach this: one listed marker
    # (weight 3) is enough alone. Set where held-out Mandarin sentences of the shared corpora pass it no
    # more often than they passed the previous model's 2.0 (DRCD 0.77%, was 0.95%; CMRC 1.60%, was 2.63%).
    # Other held-out Mandarin: paragraphs 0-0.2%, whole reviews 0.8%, comma-separated clauses 1.6-3.0%.
    yue_threshold: float = 1.0
    # A Han-only text too short to decide (under min_letters) is still `yue` when its score reaches this:
    # 唔該, 係呀 and 冇 carry a listed marker; 好的, 是的 and 嗯 stay undecided and take the source's hint.
    short_yue_score: float = 3.0
    # Classify paragraphs too; a document whose paragraphs disagree by at least this share is `mixed`.
    mixed_share: float = 0.25
    # Label for Chinese text with no Simplified- or Traditional-only characters.
    neutral_script: str = "zh-Hant"


@dataclass
class PiiOptions:
    enabled: bool = True
    # Types: email, ip, phone_hk, phone_cn, hkid, cn_id, card. Each match becomes <TYPE> e.g. <EMAIL>.
    types: list[str] = field(default_factory=lambda: ["email", "ip", "phone_hk", "phone_cn", "hkid", "cn_id", "card"])


@dataclass
class DedupOptions:
    exact: bool = True
    near: bool = True
    # MinHash: permutations, bands x rows (bands * rows <= num_perm); threshold ~ (1/bands)^(1/rows) = 0.8.
    num_perm: int = 128
    bands: int = 14
    rows: int = 9
    # Shingles: character n-grams for Chinese, word n-grams for English and other Latin text.
    cjk_ngram: int = 5
    word_ngram: int = 5
    seed: int = 1
    # Global dedup in K key buckets (hash of the exact or band key modulo K): `triglot data merge` runs them in
    # K processes, `launch slurm clean` as K-task arrays; each holds about 1/K of the keys. Same kept set for any K.
    partitions: int = 1


@dataclass
class DataSection:
    name: str = "data"
    sources: list[SourceSpec] = field(default_factory=list)
    # Output folder of the clean stage; empty means <run.dir>/data/clean.
    output_dir: str = ""
    workers: int = 1
    # Languages kept; documents identified as anything else are removed (reason `language`).
    keep_languages: list[str] = field(default_factory=lambda: ["en", "zh-Hans", "zh-Hant", "yue", "mixed"])
    langid: LangIdOptions = field(default_factory=LangIdOptions)
    filters: dict[str, Thresholds] = field(default_factory=_default_thresholds)
    # Turn off named filters everywhere, e.g. [terminal_punct].
    disabled_filters: list[str] = field(default_factory=list)
    pii: PiiOptions = field(default_factory=PiiOptions)
    dedup: DedupOptions = field(default_factory=DedupOptions)
    # Repair mojibake with ftfy; Unicode NFC plus full-width ASCII folded to half-width (CJK punctuation kept).
    fix_mojibake: bool = True
    # Input lines (or records) longer than this are reported unreadable instead of loaded.
    max_record_bytes: int = 8_000_000
    # Work unit size: files larger than this are split across workers by record index.
    unit_bytes: int = 2_000_000
    # Output parquet shard size (rows).
    rows_per_part: int = 50_000
    # Removed examples kept per filter in the report.
    examples_per_reason: int = 3
    # Cap on documents read per source (0 = no cap), for quick runs.
    max_docs_per_source: int = 0
