"""Rebuild the shipped Cantonese-versus-Mandarin model, `resources/yue_nb.tsv`, from the shared corpora.

    .venv/bin/python -m triglot.data_pipeline.build_langid [--data ../shared/data/corpora]

A character naive Bayes over Han unigrams and bigrams, on text folded to Simplified (so that the script,
Simplified or Traditional, is not taken as evidence of the variety). Each kept n-gram gets the log ratio
of its smoothed frequency in Cantonese and in Mandarin text, clipped, so no single n-gram decides alone.

Training text, by design (see resources/SOURCES.md):
- Cantonese: the even-numbered documents of yue/yue_wikipedia, sft/yue_alpaca_seed, and the even-numbered
  restaurant reviews of yue/yue_canclid_sentences/daaizungDimpingRaw.txt (written Guangzhou Cantonese,
  Simplified script, some of it Mandarin).
- Mandarin: the even-numbered documents of zh_hant/zh_hant_drcd and zh_hans/zh_hans_cmrc2018, the
  even-numbered reviews of zh_hans/zh_hans_reviews_sophonplus, the Chinese side of
  sft/sft_alpaca_bilingual_en_zh and pref/dpo_zh_en_demo.
Never used: transcribed or read speech (yue/yue_commonvoice; the Common Voice and subtitle files of
yue/yue_canclid_sentences), dictionary example sentences and benchmark questions: those are what the model
is measured on. The odd-numbered documents and reviews are held out for bench/bench_clean.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from triglot.data_pipeline import langid

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"
MIN_COUNT = 3  # n-grams seen fewer times in both classes together are dropped (noise, names)
MIN_WEIGHT = 0.4  # and so are those whose log ratio is this close to zero (no evidence either way)
CLIP = 4.0
SMOOTHING = 0.5
EN_WORDS = 20_000
MARKER_WEIGHT = 3.0
MARKER_MAX_MANDARIN = 2


def _jsonl(path: Path, key: str = "text") -> Iterator[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line).get(key) or ""


def _even(texts: Iterator[str]) -> Iterator[str]:
    return (t for i, t in enumerate(texts) if i % 2 == 0)


def _alpaca_yue(folder: Path, part: int | None = None) -> Iterator[str]:
    """Cantonese instruction records: all of them, or only the even (part 0) or odd (part 1) ones."""
    for i, line in enumerate((folder / "seed.jsonl").read_text(encoding="utf-8").splitlines()):
        if part is not None and i % 2 != part:
            continue
        rec = json.loads(line)
        yield rec["instruction"]
        for inst in rec.get("instances", []):
            yield inst.get("input", "")
            yield inst.get("output", "")
    for i, line in enumerate((folder / "regen.jsonl").read_text(encoding="utf-8").splitlines()):
        if part is not None and i % 2 != part:
            continue
        rec = json.loads(line)
        yield from (rec.get(k, "") for k in ("instruction", "input", "output"))


def _reviews(folder: Path) -> Iterator[str]:
    """The even-numbered Mandarin reviews (shopping, food delivery, hotels)."""
    for name in ("online_shopping_10_cats.csv", "waimai_10k.csv", "ChnSentiCorp_htl_all.csv"):
        with open(folder / name, encoding="utf-8", newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                if i % 2 == 0:
                    yield row.get("review") or ""


DIANPING = "yue/yue_canclid_sentences/daaizungDimpingRaw.txt"


def dianping_reviews(data: Path, part: int) -> Iterator[str]:
    """The even (part 0, training) or odd (part 1, held out) Cantonese restaurant reviews, one a line, quoted."""
    for i, line in enumerate((data / DIANPING).read_text(encoding="utf-8").splitlines()):
        if i % 2 == part and line.strip():
            yield line.strip().strip('"')


def _alpaca_zh(folder: Path) -> Iterator[str]:
    for path in sorted(folder.glob("alpaca_chinese_part_*.json")):
        for rec in json.loads(path.read_text(encoding="utf-8")):
            yield from (rec.get(k, "") for k in ("zh_instruction", "zh_input", "zh_output"))


def _dpo_zh(path: Path) -> Iterator[str]:
    for rec in json.loads(path.read_text(encoding="utf-8")):
        yield from (turn["value"] for turn in rec["conversations"])
        yield from (rec[k]["value"] for k in ("chosen", "rejected"))


SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?")


def _split_by_markers(texts: Iterator[str]) -> tuple[list[str], list[str]]:
    """Sentences with a listed Cantonese marker, and as many without one, taken from the same article:
    both sides then have the same topics, and differ in register only."""
    markers = re.compile("|".join(re.escape(w) for w in langid.read_list("yue_markers.txt")))
    exceptions = re.compile("|".join(re.escape(w) for w in langid.read_list("yue_marker_exceptions.txt")))
    colloquial, formal = [], []
    for text in texts:
        marked, unmarked = [], []
        for sent in SENTENCE.findall(text):
            hits = len(markers.findall(sent)) - len(exceptions.findall(sent))
            (marked if hits > 0 else unmarked).append(sent)
        n = min(len(marked), len(unmarked))
        colloquial += marked[:n]
        formal += unmarked[:n]
    return colloquial, formal


def training_pairs(data: Path) -> dict[str, tuple[list[Iterator[str]], list[Iterator[str]]]]:
    """Four (Cantonese, Mandarin-like) pairs of unlike genre and topic: encyclopedia against encyclopedia,
    instructions against instructions and chat, reviews against reviews, and marked against unmarked
    sentences of the same Cantonese articles. Each Mandarin genre faces its Cantonese counterpart only: a
    genre on one side alone (everyday review words against instructions) would pass for the variety."""
    colloquial, formal = _split_by_markers(_even(_jsonl(data / "yue/yue_wikipedia/yue_wiki_sample.jsonl")))
    wiki = ([_even(_jsonl(data / "yue/yue_wikipedia/yue_wiki_sample.jsonl"))],
            [_even(_jsonl(data / "zh_hant/zh_hant_drcd/drcd_contexts.jsonl")),
             _even(_jsonl(data / "zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl"))])
    chat = ([_alpaca_yue(data / "sft/yue_alpaca_seed")],
            [_alpaca_zh(data / "sft/sft_alpaca_bilingual_en_zh"),
             _dpo_zh(data / "pref/dpo_zh_en_demo/dpo_zh_demo.json")])
    reviews = ([dianping_reviews(data, 0)], [_reviews(data / "zh_hans/zh_hans_reviews_sophonplus")])
    return {"wiki": wiki, "chat": chat, "reviews": reviews, "register": ([iter(colloquial)], [iter(formal)])}


def count_ngrams(texts: Iterator[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        if text:
            counts.update(langid.ngram_keys(langid.codepoints(text)).tolist())
    return counts


def agree(anchors: list[dict[int, float]], others: list[dict[int, float]]) -> dict[int, float]:
    """N-grams that point the same way in a topic-matched pair (an anchor) and in at least one other pair,
    and against it in none, at the weakest of the agreeing weights.

    The Cantonese encyclopedia is about Hong Kong, singers and bus routes far more than the Mandarin one,
    so that pair mixes topic with variety. The anchors hold topic still: Cantonese against Mandarin
    instructions (like tasks), restaurant against food and shop reviews, and marked against unmarked
    sentences of the same articles. A topic word
    does not tell those apart in two pairs, while 嘅, 咗, 喺 or 的, 是 do. (Measured on held-out Mandarin
    clauses: n-grams backed by one pair alone, even a matched one, bring in topic words.)"""
    models = anchors + others
    out = {}
    for k in set().union(*(set(m) for m in anchors)):
        ws = [m[k] for m in models if k in m]
        if len(ws) >= 2 and (all(x > 0 for x in ws) or all(x < 0 for x in ws)):
            out[k] = min(ws, key=abs)
    return out


def weights(yue: Counter, zh: Counter) -> dict[int, float]:
    """Clipped log ratio of smoothed relative frequencies, per n-gram order (unigrams and bigrams apart)."""
    out = {}
    for is_bigram in (False, True):
        keys = [k for k in set(yue) | set(zh) if (k >= langid.BIGRAM_OFFSET) == is_bigram]
        n_yue = sum(yue[k] for k in keys) + SMOOTHING * len(keys)
        n_zh = sum(zh[k] for k in keys) + SMOOTHING * len(keys)
        for k in keys:
            if yue[k] + zh[k] < MIN_COUNT:
                continue
            w = math.log((yue[k] + SMOOTHING) / n_yue) - math.log((zh[k] + SMOOTHING) / n_zh)
            if abs(w) >= MIN_WEIGHT:
                out[k] = max(-CLIP, min(CLIP, w))
    return out


def _key(word: str) -> int | None:
    """The bigram key of a two-character word, the character's key of a one-character word."""
    keys = langid.ngram_keys(langid.codepoints(word)).tolist()
    return keys[-1] if keys and len(word) <= 2 else None


def with_markers(model: dict[int, float], zh: Counter, pooled: dict[int, float] | None = None) -> dict[int, float]:
    """Listed Cantonese characters and two-character words (resources/yue_markers.txt, yue_words.txt)
    that the Mandarin training text (almost) never uses weigh MARKER_WEIGHT at least, also when too rare
    to be counted. A listed word that Mandarin text does use (街市, 幫手; or a pair across two words, as
    边度 in 周边度假) weighs its log ratio over all the training text (`pooled`), up to MARKER_WEIGHT, when
    that is positive. The listed Mandarin words that contain a marker (yue_marker_exceptions.txt, 關係)
    cancel it."""
    out = dict(model)
    pooled = pooled or {}
    for name in ("yue_markers.txt", "yue_words.txt"):
        for word in langid.read_list(name):
            key = _key(word)
            if key is None:
                continue
            if zh[key] <= MARKER_MAX_MANDARIN:
                out[key] = max(out.get(key, 0.0), MARKER_WEIGHT)
            elif pooled.get(key, 0.0) > 0:
                out[key] = max(out.get(key, 0.0), min(MARKER_WEIGHT, pooled[key]))
    for word in langid.read_list("yue_marker_exceptions.txt"):
        key = _key(word)
        if key is not None:
            out[key] = min(out.get(key, 0.0), -MARKER_WEIGHT)
    return out


def english_words(data: Path) -> list[str]:
    """The EN_WORDS most frequent lower-cased words of the English corpora (Wikipedia, instructions)."""
    counts: Counter = Counter()
    texts = [p.read_text(encoding="utf-8") for p in sorted((data / "en/en_wikipedia_raw").glob("wiki_*.txt"))]
    texts += [line for line in (data / "sft/sft_alpaca_seed_en/seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    for path in sorted((data / "sft/sft_alpaca_bilingual_en_zh").glob("alpaca_chinese_part_*.json")):
        texts += [rec.get(k, "") for rec in json.loads(path.read_text(encoding="utf-8"))
                  for k in ("en_instruction", "en_input", "en_output")]
    for text in texts:
        counts.update(w.lower() for w in langid.LATIN_WORD.findall(text))
    return [w for w, n in counts.most_common(EN_WORDS) if n >= 5 and len(w) > 1]


def write_words(words: list[str], path: Path) -> None:
    header = ["# Most frequent English words of the shared English corpora (Wikipedia, Alpaca instructions), one a",
              "# line. Built by `python -m triglot.data_pipeline.build_langid`; do not edit by hand."]
    path.write_text("\n".join(header + words) + "\n", encoding="utf-8")


def write_model(model: dict[int, float], path: Path) -> None:
    lines = [
        "# Cantonese-versus-Mandarin character naive Bayes: n-gram (folded to Simplified) TAB log ratio.",
        "# Positive: more frequent in Cantonese. Built by `python -m triglot.data_pipeline.build_langid`;",
        "# training text and sources: resources/SOURCES.md. Do not edit by hand.",
    ]
    lines += [f"{langid.key_text(k)}\t{w:.2f}" for k, w in sorted(model.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared corpora folder")
    parser.add_argument("--out", type=Path, default=langid.RESOURCES / langid.MODEL_FILE)
    args = parser.parse_args()
    per_pair, zh_all, yue_all = {}, Counter(), Counter()
    for name, (yue, zh) in training_pairs(args.data).items():
        zh_counts = count_ngrams(t for it in zh for t in it)
        yue_counts = count_ngrams(t for it in yue for t in it)
        if name != "register":  # only real Mandarin text vetoes a listed marker
            zh_all.update(zh_counts)
            yue_all.update(yue_counts)
        per_pair[name] = weights(yue_counts, zh_counts)
    anchors = [per_pair["chat"], per_pair["reviews"], per_pair["register"]]
    model = with_markers(agree(anchors, [per_pair["wiki"]]), zh_all, weights(yue_all, zh_all))
    write_model(model, args.out)
    words = english_words(args.data)
    write_words(words, args.out.parent / "en_common_words.txt")
    print(f"wrote {args.out.parent / 'en_common_words.txt'}: {len(words)} words")
    pos = int(np.sum(np.array(list(model.values())) > 0))
    print(f"wrote {args.out}: {len(model)} n-grams ({pos} Cantonese, {len(model) - pos} Mandarin)")


if __name__ == "__main__":
    main()
