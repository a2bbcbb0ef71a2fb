"""Language and variety identification on slices of the real corpora."""

from __future__ import annotations

import json
import re
from collections import Counter

from triglot.data_pipeline.langid import fold_to_simplified, identify

from triglot.config.data import LangIdOptions

OPTS = LangIdOptions()


def _jsonl_texts(path, n):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(n), fh, strict=False)]


def _shares(texts):
    counts = Counter(identify(t, OPTS).language for t in texts)
    return {k: v / len(texts) for k, v in counts.items()}


def test_cantonese_wikipedia_is_yue(shared_data):
    texts = [t for t in _jsonl_texts(shared_data / "corpora/yue/yue_wikipedia/yue_wiki_sample.jsonl", 3000)
             if len(t) >= 200]
    assert len(texts) > 300
    assert _shares(texts).get("yue", 0) >= 0.95


def test_traditional_mandarin_is_not_cantonese(shared_data):
    shares = _shares(_jsonl_texts(shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl", 400))
    assert shares.get("zh-Hant", 0) >= 0.95
    assert shares.get("yue", 0) <= 0.02


def test_simplified_mandarin(shared_data):
    shares = _shares(_jsonl_texts(shared_data / "corpora/zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl", 400))
    assert shares.get("zh-Hans", 0) >= 0.98


def test_cantonese_sentences_in_simplified_script_stay_yue():
    assert identify("呢间老店除左双皮奶出名外，仲有牛三星，但每次晚上过去都基本上买唔到嘅", OPTS).language == "yue"


def test_english_wikipedia_and_mixed_documents(shared_data):
    raw = (shared_data / "corpora/en/en_wikipedia_raw/wiki_00.xmlish.txt").read_text(encoding="utf-8")
    docs = re.findall(r"<doc[^>]*>\n(.*?)</doc>", raw, re.S)[:20]
    assert all(identify(d, OPTS).language == "en" for d in docs)
    zh = _jsonl_texts(shared_data / "corpora/zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl", 1)[0]
    mixed = identify(docs[0][:3 * len(zh)] + "\n" + zh, OPTS)
    assert mixed.language == "mixed"
    assert set(mixed.paragraphs) >= {"en", "zh-Hans"}


def test_other_languages_and_undecided_text():
    assert identify("Der Hund läuft über die Straße und die Kinder spielen im Garten mit dem Ball.", OPTS).language == "other"
    assert identify("これは日本語の文章です。ひらがなとカタカナが入っています。", OPTS).language == "other"
    assert identify("12345 !!", OPTS, hint="yue").language == "yue"


def test_fold_to_simplified_maps_traditional_characters_only():
    assert fold_to_simplified("臺灣的經濟發展") == fold_to_simplified("台湾的经济发展")
    assert fold_to_simplified("abc 中文") == "abc 中文"
