"""Clean-stage-format parquet built at test time from slices of the real corpora in ../shared/data.

Every language folder contributes its first documents plus every document (up to a bound) that holds
a hard case: CJK Extension B, emoji, full-width punctuation, tabs, runs of spaces.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from triglot.config import compose

EXT_B = re.compile("[\U00020000-\U0002A6DF]")
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
FULL_WIDTH = re.compile("[\uFF01-\uFF5E\u3000-\u303F]")
CASES = {"ext_b": EXT_B.search, "emoji": EMOJI.search, "full_width": FULL_WIDTH.search,
         "tab": lambda t: "\t" in t, "spaces": lambda t: "   " in t}


def _jsonl(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)["text"]


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        yield from (line.rstrip("\n") for line in fh if line.strip())


def _csv_reviews(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("review"):
                yield row["review"]


def _wikiextractor(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    for block in re.findall(r"<doc [^>]*>\n(.*?)</doc>", text, flags=re.S):
        yield block.strip()


def _paragraphs(path: Path) -> Iterator[str]:
    yield from (p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip())


def _html_pages(folder: Path, limit: int = 5_000) -> Iterator[str]:
    # Raw pages keep their tab indentation; the first part of each page is a document.
    for path in sorted(folder.glob("*.html")):
        try:
            yield path.read_text(encoding="utf-8")[:limit]
        except UnicodeDecodeError:
            continue


def sources(corpora: Path) -> list[tuple[str, str, Iterator[str]]]:
    """(source name, language, documents) for a slice of every language folder."""
    return [
        ("en_wikipedia", "en", _wikiextractor(corpora / "en/en_wikipedia_raw/wiki_00.xmlish.txt")),
        ("en_tinyshakespeare", "en", _paragraphs(corpora / "en/en_tinyshakespeare/input.txt")),
        ("zh_hans_cmrc2018", "zh-Hans", _jsonl(corpora / "zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl")),
        ("zh_hans_shopping", "zh-Hans",
         _csv_reviews(corpora / "zh_hans/zh_hans_reviews_sophonplus/online_shopping_10_cats.csv")),
        ("zh_hans_waimai", "zh-Hans", _csv_reviews(corpora / "zh_hans/zh_hans_reviews_sophonplus/waimai_10k.csv")),
        ("zh_hant_drcd", "zh-Hant", _jsonl(corpora / "zh_hant/zh_hant_drcd/drcd_contexts.jsonl")),
        ("yue_wikipedia", "yue", (t for t in _jsonl(corpora / "yue/yue_wikipedia/yue_wiki_sample.jsonl")
                                  if len(t) > 40)),
        ("yue_commonvoice", "yue", _lines(corpora / "yue/yue_commonvoice/yue_commonvoice_sentences.txt")),
        ("yue_subtitles", "yue", _lines(corpora / "yue/yue_canclid_sentences/ping_subtitles_reviewed.txt")),
        ("cc_en", "en", (t for f in sorted((corpora / "web_noisy/dolma_cc_en_head").glob("*.jsonl")) for t in _jsonl(f))),
        ("web_html", "other", _html_pages(corpora / "web_noisy/trafilatura_eval_html")),
        ("yue_dimping", "mixed", _lines(corpora / "yue/yue_canclid_sentences/daaizungDimpingRaw.txt")),
    ]


def select(docs: Iterator[str], first: int, hard: int, scan: int) -> list[str]:
    """The first `first` documents plus, per hard case, up to `hard` further ones that have it."""
    chosen, taken = [], dict.fromkeys(CASES, 0)
    for i, text in enumerate(docs):
        if i >= scan:
            break
        if i < first:
            chosen.append(text)
            continue
        cases = [c for c, check in CASES.items() if taken[c] < hard and check(text)]
        if cases:
            chosen.append(text)
            for c in cases:
                taken[c] += 1
    return chosen


def make_clean_dir(corpora: Path, folder: Path, first: int = 50, hard: int = 10, scan: int = 100_000,
                   files: int = 2) -> list[dict]:
    """Write part-*.parquet files (id, text, language, source, orig_hash); return the documents."""
    rows = []
    for name, language, docs in sources(corpora):
        for i, text in enumerate(select(docs, first, hard, scan)):
            rows.append({"id": f"{name}-{i}", "text": text, "language": language, "source": name,
                         "orig_hash": hashlib.sha1(text.encode()).hexdigest()})
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(rows) // files)
    for k in range(files):
        part = rows[k * per_file:(k + 1) * per_file]
        pq.write_table(pa.Table.from_pylist(part), folder / f"part-{k:05d}.parquet", row_group_size=100)
    return rows


def tokenizer_config(run_dir: Path, clean_dir: Path, *overrides: str):
    """A run config whose tokenizer trains quickly on `clean_dir`."""
    return compose({"run": {"dir": str(run_dir)}}, [f"tokenizer.input_dir={clean_dir}", f"pack.input_dir={clean_dir}",
                                                      "tokenizer.sample_chars=400000", *overrides])
