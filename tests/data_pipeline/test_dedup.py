"""Deduplication across the whole run: Traditional/Simplified copies, exact duplicates, workers, shards."""

from __future__ import annotations

import csv
import json
from collections import Counter

import opencc
from triglot.data_pipeline.clean import merge_clean_stage, run_clean_stage
from triglot.data_pipeline.normalize import normalize_text

from tests.data_pipeline.clean_helpers import clean_config, read_output


def _drcd(shared_data, n):
    with open(shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh))["text"] for _ in range(n)]


def test_simplified_copy_of_traditional_text_is_a_near_duplicate(tmp_path, shared_data):
    texts = _drcd(shared_data, 20)
    copy = opencc.OpenCC("t2s").convert(texts[7])
    assert copy != texts[7]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in [*texts, copy]), encoding="utf-8")
    run_clean_stage(clean_config(tmp_path / "run", [{"name": "drcd", "paths": [str(path)], "format": "jsonl"}]))
    rows, report = read_output(tmp_path / "run")
    assert report["removed_by_reason"]["dedup_near"]["docs"] == 1
    assert report["examples"]["dedup_near"][0]["id"].endswith(":line21")
    kept = {r["id"]: r for r in rows}
    assert "drcd/docs.jsonl:line21" not in kept
    # The kept original is still Traditional: nothing was converted.
    assert kept["drcd/docs.jsonl:line8"]["text"] == normalize_text(texts[7])
    assert kept["drcd/docs.jsonl:line8"]["language"] == "zh-Hant"


def _review_slice(shared_data, tmp_path, start=48900, stop=51500):
    """A slice of the shopping reviews where the source repeats a dozen reviews, as a CSV in tmp_path."""
    src = shared_data / "corpora/zh_hans/zh_hans_reviews_sophonplus/online_shopping_10_cats.csv"
    with open(src, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.DictReader(fh))[start:stop]
    path = tmp_path / "reviews.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["cat", "label", "review"])
        writer.writeheader()
        writer.writerows(records)
    return path, [r["review"] for r in records]


def _review_config(tmp_path, path, name, **data):
    return clean_config(tmp_path / name, [{"name": "reviews", "paths": [str(path)], "format": "csv",
                                           "text_field": "review"}], ["data.filters.zh-Hans.min_chars=4"], **data)


def test_exact_duplicates_in_reviews_are_removed(tmp_path, shared_data):
    path, reviews = _review_slice(shared_data, tmp_path)
    copies = Counter(normalize_text(r) for r in reviews)
    run_clean_stage(_review_config(tmp_path, path, "one"))
    rows, report = read_output(tmp_path / "one")
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts))
    # Every kept review that the input repeats was kept once; the other copies are exact duplicates.
    extra = sum(copies[t] - 1 for t in texts if t in copies)
    assert extra >= 3
    assert report["removed_by_reason"]["dedup_exact"]["docs"] >= extra


def test_duplicates_across_workers_and_shards_are_caught(tmp_path, shared_data):
    path, _ = _review_slice(shared_data, tmp_path)
    run_clean_stage(_review_config(tmp_path, path, "one"), workers=1)
    single, single_report = read_output(tmp_path / "one")
    # Small units split the file into many slices handled by two worker processes.
    run_clean_stage(_review_config(tmp_path, path, "two", unit_bytes=30_000), workers=2)
    two, two_report = read_output(tmp_path / "two")
    cfg = _review_config(tmp_path, path, "shards", unit_bytes=30_000)
    run_clean_stage(cfg, shard=(0, 2))
    run_clean_stage(cfg, shard=(1, 2))
    merge_clean_stage(cfg)
    shards, shard_report = read_output(tmp_path / "shards")
    assert single_report["removed_by_reason"]["dedup_exact"]["docs"] > 0
    for rows, report in ((two, two_report), (shards, shard_report)):
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in single)
        assert report["removed_by_reason"]["dedup_exact"] == single_report["removed_by_reason"]["dedup_exact"]
        texts = [r["text"] for r in rows]
        assert len(texts) == len(set(texts))
