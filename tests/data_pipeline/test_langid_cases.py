"""Language identification on real texts of the shared corpora: the source hint, Japanese quoted in
Cantonese, TeX and code inside Chinese, and short English."""

from __future__ import annotations

import json

from triglot.data_pipeline.langid import classify_block, explain, identify

from triglot.config.data import LangIdOptions

OPTS = LangIdOptions()


def _jsonl_by_id(path, doc_id: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return next(rec for rec in map(json.loads, fh) if rec["id"] == doc_id)


def test_hint_decides_chinese_without_evidence_either_way(shared_data):
    # A Cantonese Wikipedia stub whose n-grams cancel out (+昌站, -昌) and no script-specific character.
    stub = _jsonl_by_id(shared_data / "corpora/yue/yue_wikipedia/yue_wiki_sample.jsonl", "10755")["text"].strip()
    assert stub == "南昌站可以指："
    assert abs(identify(stub, OPTS).yue_score) < 0.5 * OPTS.yue_threshold
    assert identify(stub, OPTS).language == "zh-Hant"
    for hint in ("yue", "zh-Hans", "zh-Hant"):
        result = identify(stub, OPTS, hint=hint)
        assert (result.language, result.hinted) == (hint, True)


def test_evidence_against_the_hint_wins(shared_data):
    with open(shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl", encoding="utf-8") as fh:
        mandarin = json.loads(next(fh))["text"]
    result = identify(mandarin, OPTS, hint="yue")
    assert (result.language, result.hinted) == ("zh-Hant", False)
    voice = "我哋今日去飲茶"  # a marked Cantonese sentence stays yue under a Mandarin hint
    assert identify(voice, OPTS, hint="zh-Hant").language == "yue"
    simplified = "呢间老店除左双皮奶出名外，仲有牛三星，但每次晚上过去都基本上买唔到嘅"
    assert identify(simplified, OPTS, hint="zh-Hant").language == "yue"


def test_cantonese_article_quoting_japanese_names_stays_yue(shared_data):
    article = _jsonl_by_id(shared_data / "corpora/yue/yue_wikipedia/yue_wiki_sample.jsonl", "22572")["text"]
    assert "ばん だいすけ" in article and "さいとう きよのり" in article
    result = identify(article, OPTS)
    assert result.language == "yue", explain(article)


def test_japanese_stays_other():
    assert identify("これは日本語の文章です。ひらがなとカタカナが入っています。", OPTS).language == "other"
    assert identify("伴大介（ばん だいすけ）は、日本の俳優である。本名は齊藤清憲（さいとう きよのり）。", OPTS).language == "other"


def test_chinese_with_tex_is_labelled_by_its_chinese(shared_data):
    records = json.loads((shared_data / "corpora/sft/sft_alpaca_bilingual_en_zh/alpaca_chinese_part_1.json")
                         .read_text(encoding="utf-8"))
    answer = records[398]["zh_output"]
    # The derivation lines only: short Chinese lead-ins around $\frac{...}$ formulas.
    lines = [line for line in answer.split("\n") if "$" in line or "得到" in line][:6]
    text = "\n".join(lines)
    assert "\\frac" in text and "\\times" in text
    assert identify(text, OPTS).language == "zh-Hans"


def test_chinese_with_code_is_labelled_by_its_chinese(shared_data):
    records = json.loads((shared_data / "corpora/pref/dpo_zh_en_demo/dpo_zh_demo.json").read_text(encoding="utf-8"))
    answers = [r["chosen"]["value"] for r in records]
    answer = next(a for a in answers if a.startswith("在Java中，没有像C++等语言中那样的结构"))
    assert "```java" in answer
    result = identify(answer, OPTS)
    assert result.language == "zh-Hans", result.paragraphs


def test_short_english_sentences_are_en(shared_data):
    seeds = [json.loads(line) for line in
             (shared_data / "corpora/sft/sft_alpaca_seed_en/seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    outputs = {inst["output"] for rec in seeds for inst in rec["instances"]}
    sentences = ["Day 7: Depart Seattle.", "Christianity: spiritual, devout, pious, God-fearing."]
    for sentence in sentences:
        assert any(sentence in out for out in outputs)
        assert identify(sentence, OPTS).language == "en", sentence
    assert identify("Guten Morgen, wie geht es dir?", OPTS).language == "other"


def test_explain_names_the_deciding_ngrams():
    why = explain("佢喺屋企食緊飯")
    assert why.startswith("+") and "佢" in why


def test_a_short_reply_is_yue_only_with_a_marker():
    # Under min_letters a text is undecided; a Han-only one with a listed marker's weight is still Cantonese.
    for reply in ("唔該", "係呀", "冇"):
        assert classify_block(reply, OPTS).language == "yue", (reply, explain(reply))
        assert identify(reply, OPTS, hint="zh-Hant").language == "yue"
    for reply in ("好的", "是的", "嗯", "好好"):
        assert classify_block(reply, OPTS).language == "undecided", (reply, explain(reply))
        assert (identify(reply, OPTS, hint="zh-Hant").language, identify(reply, OPTS).language) == ("zh-Hant", "other")
    assert classify_block("唔 ok", OPTS).language == "undecided"  # not Han only
