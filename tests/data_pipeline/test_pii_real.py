"""PII scrubbing on real shared text: year and number ranges, prices and ISBNs stay; Hong Kong phone
numbers and emails that real text gives are replaced."""

from __future__ import annotations

import json

from triglot.data_pipeline.pii import scrub_pii

ALL_PII = ["email", "ip", "phone_hk", "phone_cn", "hkid", "cn_id", "card"]


def _paragraph(path, needle: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return next(json.loads(line)["text"] for line in fh if needle in line)


def test_year_and_number_ranges_are_not_phones(shared_data):
    corpora = shared_data / "corpora"
    cases = [
        (corpora / "yue/yue_wikipedia/yue_wiki_sample.jsonl", "1947-1949年、1972-1973年、1987-1989年"),  # years
        (corpora / "yue/yue_wikipedia/yue_wiki_sample.jsonl", "早期系統（1970-1975）"),
        (corpora / "zh_hant/zh_hant_drcd/drcd_contexts.jsonl", "南坡的高寒地帶可延伸至海拔2800米，冰川的起始線/雪線則從3000-3500米"),
        (corpora / "zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl", "富豪超级奥林比安（5001-5103）"),  # fleet numbers
    ]
    for path, needle in cases:
        text = _paragraph(path, needle)
        scrubbed, counts = scrub_pii(text, ALL_PII)
        assert needle in scrubbed and not counts.get("phone_hk"), (needle, counts)


def test_en_dash_ranges_and_prices_stay():
    # Birth-death years as Cantonese Wikipedia writes them, and Hong Kong price ranges.
    for text in ("老豆係森姆．奧丹．愛迪生（\"Samuel Ogden Edison\"，1804–1896）", "HK$5000 8000", "1997–2047"):
        assert scrub_pii(text, ALL_PII) == (text, {})


def test_real_hong_kong_hotline_is_replaced(shared_data):
    text = _paragraph(shared_data / "corpora/zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl", "珍爱生命长者热线")
    scrubbed, counts = scrub_pii(text, ALL_PII)
    assert "2382 0881" not in scrubbed and "「珍爱生命长者热线」（<PHONE_HK>）" in scrubbed
    assert counts["phone_hk"] >= 1


def test_email_touching_chinese_text_is_replaced(shared_data):
    path = shared_data / "corpora/zh_hans/zh_hans_reviews_sophonplus/online_shopping_10_cats.csv"
    line = next(x for x in path.read_text(encoding="utf-8").splitlines() if "HRZJQ@163.COM" in x)
    scrubbed, counts = scrub_pii(line, ALL_PII)
    assert "我的EMAIL:<EMAIL>我可以为我说的话负责" in scrubbed and counts["email"] == 1
