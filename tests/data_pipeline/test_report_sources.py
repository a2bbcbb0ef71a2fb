"""The clean report on real corpora: source x language table, documents that took the hint, `empty` as its
own row, a warning naming the setting when one filter takes most of a source, and the `sentences` preset."""

from __future__ import annotations

import pytest
from triglot.data_pipeline.clean import run_clean_stage

from tests.data_pipeline.clean_helpers import clean_config, read_output
from triglot.errors import ConfigError


def _sources(corpora, **voice):
    return [
        {"name": "commonvoice", "paths": [str(corpora / "yue/yue_commonvoice/yue_commonvoice_sentences.txt")],
         "format": "text", "language": "yue", **voice},
        {"name": "en_wikipedia", "paths": [str(corpora / "en/en_wikipedia_raw/wiki_*.txt")], "format": "wikiextractor"},
    ]


def test_report_tables_and_filter_warning(tmp_path, shared_data):
    corpora = shared_data / "corpora"
    run_clean_stage(clean_config(tmp_path / "run", _sources(corpora), max_docs_per_source=400))
    _, report = read_output(tmp_path / "run")
    table = report["source_language"]
    assert sum(table["commonvoice"].values()) == report["by_source"]["commonvoice"]["docs_in"]
    assert table["commonvoice"]["yue"] > 0.8 * 400
    assert report["hinted"]["commonvoice"] > 0  # neutral sentences took the source's `language: yue`
    assert "unknown" not in report["by_language"]
    assert table["en_wikipedia"].get("empty", 0) == report["removed_by_reason"]["empty"]["docs"] > 0
    # Common Voice sentences are short: the CJK min_chars removes most of them, and the report says so.
    warning = next(w for w in report["warnings"] if w.startswith("source commonvoice: `too_short`"))
    assert "kind: sentences" in warning and "min_chars" in warning
    md = (tmp_path / "run/data/clean/report.md").read_text(encoding="utf-8")
    assert "## Source by language" in md and "took the hint" in md and "## Warnings" in md
    example = report["label_examples"]["yue"][0]
    assert "yue score" in example["evidence"]


def test_sentences_preset_keeps_a_sentence_corpus(tmp_path, shared_data):
    corpora = shared_data / "corpora"
    run_clean_stage(clean_config(tmp_path / "run", _sources(corpora, kind="sentences"), max_docs_per_source=400))
    _, report = read_output(tmp_path / "run")
    voice = report["by_source"]["commonvoice"]
    assert voice["docs_out"] >= 0.9 * voice["docs_in"]
    assert not [w for w in report["warnings"] if w.startswith("source commonvoice")]


def test_source_filters_override_and_unknown_setting(tmp_path, shared_data):
    corpora = shared_data / "corpora"
    run_clean_stage(clean_config(tmp_path / "run", _sources(corpora, filters={"min_chars": 2}), max_docs_per_source=200))
    _, report = read_output(tmp_path / "run")
    assert report["by_source"]["commonvoice"]["removed"].get("too_short", 0) == 0
    with pytest.raises(ConfigError, match=r"filters has unknown setting\(s\) \['min_char'\]"):
        run_clean_stage(clean_config(tmp_path / "bad", _sources(corpora, filters={"min_char": 2})))


def test_a_source_whose_records_cannot_be_read_is_named_in_a_warning(tmp_path, shared_data):
    """A text_field no record has leaves every record unreadable: the report says which source and why."""
    drcd = shared_data / "corpora" / "zh_hant" / "zh_hant_drcd"
    sources = [{"name": "drcd", "paths": [str(next(drcd.glob("*.jsonl")))], "format": "jsonl",
                "text_field": "body"}]
    run_clean_stage(clean_config(tmp_path / "run", sources, max_docs_per_source=50))
    _, report = read_output(tmp_path / "run")
    assert report["unreadable_by_source"]["drcd"] == {"missing_field": 50}
    [warning] = [w for w in report["warnings"] if w.startswith("source drcd:")]
    assert "50 of 50 records could not be read (missing_field 50)" in warning and "text_field" in warning
