"""Bad input is counted by reason with file and place, and never stops the run."""

from __future__ import annotations

import gzip
import json

from triglot.data_pipeline.clean import run_clean_stage

from tests.data_pipeline.clean_helpers import clean_config, read_output


def _write_inputs(tmp_path, shared_data):
    good = [json.loads(line)["text"] for line, _ in zip(
        open(shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl", encoding="utf-8"), range(20), strict=False)]
    lines = [json.dumps({"text": t}, ensure_ascii=False).encode("utf-8") for t in good]
    folder = tmp_path / "in"
    folder.mkdir()
    # Line 3 has invalid UTF-8, line 5 is broken JSON.
    bad = lines[:2] + [b'{"text": "\xff\xfe broken bytes"}', lines[2], b'{"text": "no closing brace"'] + lines[3:5]
    (folder / "mixed.jsonl").write_bytes(b"\n".join(bad) + b"\n")
    blob = gzip.compress(b"\n".join(lines[6:]) + b"\n")
    (folder / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "binary.jsonl").write_bytes(bytes(range(256)) * 64)
    with open(folder / "huge.jsonl", "wb") as fh:
        fh.write(b'{"text": "' + b"x" * (50 * 1024 * 1024) + b'"}\n')
        fh.write(lines[5] + b"\n")
    return folder


def test_bad_input_is_counted_and_the_run_completes(tmp_path, shared_data):
    folder = _write_inputs(tmp_path, shared_data)
    sources = [{"name": "bad", "paths": [str(folder / "*.jsonl*")], "format": "jsonl"}]
    cfg = clean_config(tmp_path / "run", sources)
    run_clean_stage(cfg)
    rows, report = read_output(tmp_path / "run")
    reasons = report["unreadable_by_reason"]
    assert reasons["invalid_utf8"] == 1
    assert reasons["bad_json"] == 1
    assert reasons["truncated_or_corrupt_compressed"] == 1
    assert reasons["empty_file"] == 1
    assert reasons["binary_file"] == 1
    assert reasons["record_too_long"] == 1
    places = {(e["file"].rsplit("/", 1)[-1], e["where"], e["reason"]) for e in report["unreadable_records"]}
    assert ("mixed.jsonl", "line 3", "invalid_utf8") in places
    assert ("mixed.jsonl", "line 5", "bad_json") in places
    assert ("huge.jsonl", "line 1", "record_too_long") in places
    assert ("empty.jsonl", "file", "empty_file") in places
    acc = report["accounting"]
    assert acc["balanced"] and acc["docs_in"] == acc["kept"] + acc["removed"] + acc["unreadable"]
    # Good records around the bad ones survive: 5 in mixed.jsonl, 1 after the huge line, some before the cut.
    assert len(rows) == acc["kept"] >= 7
    assert (tmp_path / "run/data/clean/report.md").read_text(encoding="utf-8").count("invalid_utf8") >= 1
