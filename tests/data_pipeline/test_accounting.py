"""Every input document is accounted for on real data: in = kept + removed by reason + unreadable."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
from triglot.data_pipeline.clean import run_clean_stage

from tests.data_pipeline.clean_helpers import clean_config, read_output
from triglot.config.data import LANGUAGES


def _expected_counts(corpora):
    """Documents per source, counted here without the pipeline's readers."""
    wiki = sum(f.read_text(encoding="utf-8").count("<doc ") for f in sorted((corpora / "en/en_wikipedia_raw").glob("wiki_*.txt")))
    cmrc = sum(1 for line in open(corpora / "zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl", encoding="utf-8") if line.strip())
    with open(corpora / "zh_hans/zh_hans_reviews_sophonplus/ChnSentiCorp_htl_all.csv", encoding="utf-8", newline="") as fh:
        reviews = sum(1 for _ in csv.DictReader(fh))
    voice = sum(1 for line in open(corpora / "yue/yue_commonvoice/yue_commonvoice_sentences.txt", encoding="utf-8") if line.strip())
    seed = sum(1 for line in open(corpora / "sft/yue_alpaca_seed/seed.jsonl", encoding="utf-8") if line.strip())
    return {"en_wikipedia": wiki, "cmrc": cmrc, "reviews": reviews, "commonvoice": voice, "yue_seed": seed}


def test_documents_in_equal_kept_plus_removed_plus_unreadable(tmp_path, shared_data):
    corpora = shared_data / "corpora"
    sources = [
        {"name": "en_wikipedia", "paths": [str(corpora / "en/en_wikipedia_raw/wiki_*.txt")], "format": "wikiextractor"},
        {"name": "cmrc", "paths": [str(corpora / "zh_hans/zh_hans_cmrc2018/*.jsonl")], "format": "jsonl"},
        {"name": "reviews", "paths": [str(corpora / "zh_hans/zh_hans_reviews_sophonplus/ChnSentiCorp_htl_all.csv")],
         "format": "csv", "text_field": "review"},
        {"name": "commonvoice", "paths": [str(corpora / "yue/yue_commonvoice/yue_commonvoice_sentences.txt")],
         "format": "text", "language": "yue"},
        {"name": "yue_seed", "paths": [str(corpora / "sft/yue_alpaca_seed/seed.jsonl")], "format": "jsonl",
         "text_fields": ["instruction", "instances.0.input", "instances.0.output"]},
    ]
    run_clean_stage(clean_config(tmp_path / "run", sources, unit_bytes=500_000, workers=2))
    rows, report = read_output(tmp_path / "run")
    expected = _expected_counts(corpora)
    acc = report["accounting"]
    assert acc["docs_in"] == sum(expected.values())
    removed = sum(v["docs"] for v in report["removed_by_reason"].values())
    unreadable = sum(report["unreadable_by_reason"].values())
    assert acc["docs_in"] == len(rows) + removed + unreadable
    for name, count in expected.items():
        entry = report["by_source"][name]
        assert entry["docs_in"] == count
        assert entry["docs_in"] == entry["docs_out"] + sum(entry["removed"].values()) + entry["unreadable"]
        assert entry["docs_out"] == sum(1 for r in rows if r["source"] == name) > 0
    by_language = report["by_language"]
    assert sum(v["docs_out"] for v in by_language.values()) == len(rows)
    assert {r["language"] for r in rows} <= set(LANGUAGES)
    assert len({r["id"] for r in rows}) == len(rows)
    out = tmp_path / "run/data/clean"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {e["path"].rsplit("/", 1)[-1] for e in manifest["outputs"]}
    assert {"report.json", "report.md"} <= listed and any(n.startswith("part-") for n in listed)
    schema = pq.read_schema(next(out.glob("part-*.parquet")))
    assert {"id", "text", "language", "source", "orig_hash"} <= set(schema.names)
    assert all(report["examples"][reason] for reason in report["removed_by_reason"])
