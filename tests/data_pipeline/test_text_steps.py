"""Normalisation, quality filters and PII scrubbing on small texts."""

from __future__ import annotations

import json

from triglot.data_pipeline.filters import quality_reason, terminal_punct
from triglot.data_pipeline.normalize import normalize_text
from triglot.data_pipeline.pii import cn_id_valid, hkid_valid, luhn_valid, scrub_pii

from triglot.config.data import DataSection

THRESHOLDS = DataSection().filters
ALL_PII = ["email", "ip", "phone_hk", "phone_cn", "hkid", "cn_id", "card"]


def test_normalisation_keeps_cjk_punctuation_and_fixes_the_rest():
    text = normalize_text("Ｈｅｌｌｏ，世界！「好」\u200b\x07  a\u00a0\u00a0b\r\n\n\n\nCafÃ© ")
    assert text == "Hello，世界！「好」 a b\n\nCafé"


def test_real_paragraphs_pass_the_filters(shared_data):
    path = shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl"
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(next(fh))["text"] for _ in range(50)]
    passed = sum(quality_reason(normalize_text(t), "zh-Hant", THRESHOLDS["zh-Hant"]) is None for t in texts)
    assert passed >= 48


def test_filters_catch_repetition_and_short_text():
    assert quality_reason("好" * 5, "yue", THRESHOLDS["yue"]) == "too_short"
    spam = "\n".join(["立即購買，限時優惠！"] * 8 + ["今日天氣幾好，我哋去行山。"] * 2)
    assert quality_reason(spam, "zh-Hant", THRESHOLDS["zh-Hant"]) == "dup_lines"
    repeated = "哈哈哈哈哈哈哈哈" * 20
    assert quality_reason(repeated, "yue", THRESHOLDS["yue"]).startswith("top_")


def test_terminal_punctuation_counts_closing_quotes():
    t = THRESHOLDS["zh-Hant"]
    ended = "\n".join(["佢話：「我唔去喇。」", "真係好嘢！』", "點解會咁？」", "我知道。", "好啦。"])
    assert terminal_punct(ended, "yue", t) is None
    unended = "\n".join(["首頁", "新聞", "體育", "娛樂", "財經"])
    assert terminal_punct(unended, "zh-Hant", t) == "terminal_punct"


def test_check_digits():
    assert hkid_valid("A", "123456", "3") and not hkid_valid("A", "123456", "4")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")


def test_pii_placeholders_and_counts():
    text = ("電郵 chan.tm@example.com.hk，電話 +852 9123 4567 或 2345-6789，手機 13812345678。"
            "身份證 A123456(3)、11010519491231002X，卡號 4111-1111-1111-1111，IP 192.168.1.20。")
    scrubbed, counts = scrub_pii(text, ALL_PII)
    assert counts == {"email": 1, "phone_hk": 2, "phone_cn": 1, "hkid": 1, "cn_id": 1, "card": 1, "ip": 1}
    for placeholder in ("<EMAIL>", "<PHONE_HK>", "<PHONE_CN>", "<HKID>", "<CN_ID>", "<CARD>", "<IP>"):
        assert placeholder in scrubbed
    assert "9123" not in scrubbed and "chan.tm" not in scrubbed


def test_pii_leaves_invalid_numbers_alone():
    text = "HKID A123456(4)，身份證 110105194912310021，卡 4111 1111 1111 1112，版本 999.1.1.1，日期 20200605。"
    scrubbed, counts = scrub_pii(text, ALL_PII)
    assert scrubbed == text and not counts
