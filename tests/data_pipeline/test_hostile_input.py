"""Hostile input (cut compressed files, odd encodings, broken quotes, links, deep nesting) is counted by
reason with file and place; the good records around it are read, and the run completes."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os

import pytest
import zstandard
from triglot.data_pipeline import readers
from triglot.data_pipeline.clean import data_options, resolve_sources, run_clean_stage
from triglot.data_pipeline.readers import read_records
from triglot.data_pipeline.worker import plan_units, process_unit

from tests.data_pipeline.clean_helpers import clean_config, read_output
from triglot.errors import InputError


def _drcd(shared_data, count: int) -> list[str]:
    path = shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line, _ in zip(fh, range(count), strict=False)]


def _jsonl(texts: list[str]) -> list[bytes]:
    return [json.dumps({"text": t}, ensure_ascii=False).encode("utf-8") for t in texts]


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _run(tmp_path, sources: list[dict]) -> tuple[list[dict], dict, set[tuple[str, str, str]]]:
    run_clean_stage(clean_config(tmp_path / "run", sources))
    rows, report = read_output(tmp_path / "run")
    acc = report["accounting"]
    assert acc["balanced"] and acc["docs_in"] == acc["kept"] + acc["removed"] + acc["unreadable"]
    places = {(e["file"].rsplit("/", 1)[-1], e["where"], e["reason"]) for e in report["unreadable_records"]}
    return rows, report, places


def _source(name: str, path, fmt: str = "jsonl", **extra) -> dict:
    return {"name": name, "paths": [str(path)], "format": fmt, "language": "zh-Hant", **extra}


def test_odd_json_lines_and_encodings_cost_only_their_own_records(tmp_path, shared_data):
    texts = _drcd(shared_data, 40)  # each file its own slice, so that dedup removes nothing across them
    lines = _jsonl(texts)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "deep.jsonl").write_bytes(b"\n".join(lines[:3] + [b"[" * 200_000 + b"]" * 200_000] + lines[3:6]) + b"\n")
    (folder / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines[6:11]) + b"\n")
    odd = [b'{"text": {"body": "x"}}', b'{"text": ["x", "y"]}', b'{"text": true}', b'{"text": 5}']
    (folder / "nontext.jsonl").write_bytes(b"\n".join(lines[11:12] + odd + lines[12:13]) + b"\n")
    with_nul = lines[17].replace(b'{"text": "', b'{"text": "ab\x00')
    (folder / "nul.jsonl").write_bytes(b"\n".join(lines[13:17] + [with_nul] + lines[18:23]) + b"\n")
    (folder / "utf16.jsonl").write_bytes((b"\n".join(lines[23:28]) + b"\n").decode("utf-8").encode("utf-16"))
    (folder / "utf16le.txt").write_bytes("\n".join(texts[28:34]).encode("utf-16-le"))
    (folder / "utf32.txt").write_bytes("\n".join(texts[36:40]).encode("utf-32"))
    joined = [{"q": texts[34], "n": 3}, {"q": texts[35], "n": {"a": 1}}]  # a number joins, an object does not
    (folder / "joined.jsonl").write_text("".join(json.dumps(j, ensure_ascii=False) + "\n" for j in joined), "utf-8")
    sources = [_source(n, folder / f"{n}.jsonl") for n in ("deep", "bom", "nontext", "nul", "utf16")]
    sources += [_source("utf16le", folder / "utf16le.txt", "text"), _source("utf32", folder / "utf32.txt", "text"),
                _source("joined", folder / "joined.jsonl", text_fields=["q", "n"])]
    rows, report, places = _run(tmp_path, sources)
    by_source = report["by_source"]

    def good(name):
        return by_source[name]["docs_in"] - by_source[name]["unreadable"]

    assert ("deep.jsonl", "line 4", "bad_json") in places and good("deep") == 6
    assert good("bom") == 5 and by_source["bom"]["unreadable"] == 0
    assert {("nontext.jsonl", f"line {n}", "not_text") for n in (2, 3, 4, 5)} <= places and good("nontext") == 2
    assert ("nul.jsonl", "line 5", "bad_json") in places and good("nul") == 9
    assert good("utf16") == 5 and by_source["utf16"]["unreadable"] == 0
    assert good("utf16le") == 6 and by_source["utf16le"]["unreadable"] == 0
    assert good("utf32") == 4 and by_source["utf32"]["unreadable"] == 0
    assert ("joined.jsonl", "line 2", "not_text") in places and good("joined") == 1
    assert "binary_file" not in report["unreadable_by_reason"]
    originals = {_sha1(t) for t in texts} | {_sha1(f"{texts[34]}\n\n3")}
    assert rows and {r["orig_hash"] for r in rows} <= originals  # no BOM, no JSON source, no mojibake kept
    assert any(r["id"] == "bom/bom.jsonl:line1" for r in rows)


def test_cut_compressed_files_and_warcs_are_truncated_not_partial(tmp_path, shared_data):
    texts = _drcd(shared_data, 400)
    folder = tmp_path / "in"
    folder.mkdir()
    blob = zstandard.ZstdCompressor().compress(("\n".join(texts) + "\n").encode("utf-8"))
    (folder / "cut.txt.zst").write_bytes(blob[: len(blob) // 2])
    frames = b"".join(zstandard.ZstdCompressor().compress(("\n".join(texts[i:i + 50]) + "\n").encode("utf-8"))
                      for i in range(0, 100, 50))
    (folder / "frames.txt.zst").write_bytes(frames)
    warc = (shared_data / "corpora/web_noisy/dolma_warc/sample-0000.warc.gz").read_bytes()
    (folder / "cut.warc.gz").write_bytes(warc[: len(warc) // 2])
    (folder / "junk.warc.gz").write_bytes(warc[: len(warc) // 2] + b"garbage" * 100)
    (folder / "whole.warc.gz").write_bytes(warc)
    sources = [_source("cutzst", folder / "cut.txt.zst", "text"), _source("frames", folder / "frames.txt.zst", "text"),
               _source("cutwarc", folder / "cut.warc.gz", "warc"), _source("junkwarc", folder / "junk.warc.gz", "warc"),
               _source("wholewarc", folder / "whole.warc.gz", "warc")]
    rows, report, places = _run(tmp_path, sources)
    by_source = report["by_source"]
    cut = [p for p in places if p[0] == "cut.txt.zst"]
    assert len(cut) == 1 and cut[0][2] == "truncated_or_corrupt_compressed"
    assert 0 < by_source["cutzst"]["docs_in"] - 1 < 400
    assert {r["orig_hash"] for r in rows if r["source"] == "cutzst"} <= {_sha1(t) for t in texts}  # no partial line
    assert by_source["frames"]["docs_in"] == 100 and by_source["frames"]["unreadable"] == 0
    for name, file in (("cutwarc", "cut.warc.gz"), ("junkwarc", "junk.warc.gz")):
        assert by_source[name]["unreadable"] == 1
        assert [p[2] for p in places if p[0] == file] == ["truncated_or_corrupt_compressed"]
    assert by_source["wholewarc"]["unreadable"] == 0
    assert by_source["cutwarc"]["docs_in"] == by_source["junkwarc"]["docs_in"] < by_source["wholewarc"]["docs_in"]


def test_unterminated_csv_quote_costs_one_row(tmp_path, shared_data):
    src = shared_data / "corpora/zh_hans/zh_hans_reviews_sophonplus/ChnSentiCorp_htl_all.csv"
    with open(src, encoding="utf-8-sig", newline="") as fh:
        records = [r for r, _ in zip(csv.DictReader(fh), range(40), strict=False)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records[:9])
    first, second = records[10]["review"][:20], records[10]["review"][20:]
    writer.writerow({**records[10], "review": f"{first}\n{second}"})  # a legitimate quoted two-line field
    lines = out.getvalue()
    lines += f'1,"{records[11]["review"]} 引号没有关上\n'
    for record in records[12:40]:
        writer = csv.DictWriter(out := io.StringIO(), fieldnames=list(records[0]), lineterminator="\n")
        writer.writerow(record)
        lines += out.getvalue()
    (tmp_path / "reviews.csv").write_text(lines, encoding="utf-8")
    rows, report, places = _run(tmp_path, [_source("reviews", tmp_path / "reviews.csv", "csv", text_field="review")])
    entry = report["by_source"]["reviews"]
    assert ("reviews.csv", "row 12", "bad_csv") in places and entry["unreadable"] == 1
    assert entry["docs_in"] == 9 + 1 + 1 + 28
    assert any(r["orig_hash"] == _sha1(f"{first}\n{second}") for r in rows)
    assert not any("\n1," in r["text"] for r in rows)


def test_broken_and_repeated_paths_are_counted_once(tmp_path, shared_data):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "real.jsonl").write_bytes(b"\n".join(_jsonl(_drcd(shared_data, 10))) + b"\n")
    os.symlink("real.jsonl", folder / "dup.jsonl")
    os.symlink("nonexist.jsonl", folder / "dangling.jsonl")
    os.symlink("loop2.jsonl", folder / "loop1.jsonl")
    os.symlink("loop1.jsonl", folder / "loop2.jsonl")
    os.symlink("..", folder / "sub/up")
    rows, report, places = _run(tmp_path, [_source("links", folder / "**/*.jsonl")])
    entry = report["by_source"]["links"]
    assert entry["docs_in"] == 10 + 3 and entry["unreadable"] == 3
    assert {p for p in places if p[2] == "cannot_open"} == {
        ("dangling.jsonl", "file", "cannot_open"), ("loop1.jsonl", "file", "cannot_open"),
        ("loop2.jsonl", "file", "cannot_open")}
    only_broken = [_source("broken", folder / "dangling.jsonl")]
    with pytest.raises(InputError, match="dangling.jsonl"):
        resolve_sources(data_options(clean_config(tmp_path / "run2", only_broken)))


def test_a_file_gone_after_planning_is_cannot_open(tmp_path, shared_data):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"\n".join(_jsonl(_drcd(shared_data, 5))) + b"\n")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(b"\n".join(_jsonl(_drcd(shared_data, 5)))))
    data = data_options(clean_config(tmp_path / "run", [_source("gone", folder / "*")]))
    units = plan_units(resolve_sources(data), data.unit_bytes, 0)
    for path in folder.iterdir():
        path.unlink()
    for unit in units:
        summary = process_unit(unit, data.sources[0], data, tmp_path / "units")
        assert summary["stats"]["unreadable"] == {"cannot_open": 1}
        assert summary["stats"]["unreadable_events"][0]["where"] == "file"


def test_html_nested_too_deep_is_reported_not_empty(tmp_path, shared_data):
    text = "".join(_drcd(shared_data, 2))
    folder = tmp_path / "in"
    folder.mkdir()
    for name, depth in (("deep.html", 400), ("deeper.html", 5000)):
        page = f"<html><head><title>t</title></head><body>{'<div>' * depth}<p>{text}</p>{'</div>' * depth}</body></html>"
        (folder / name).write_text(page, encoding="utf-8")
    rows, report, places = _run(tmp_path, [_source("pages", folder / "*.html", "html")])
    assert places == {("deeper.html", "file", "html_too_deep")}
    assert [r["id"] for r in rows] == ["pages/deep.html:file"]
    assert "empty" not in report["removed_by_reason"]


def test_an_unexpected_reader_failure_is_one_counted_record(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "x"}\n')
    spec = data_options(clean_config(tmp_path / "run", [_source("a", path)])).sources[0]

    def failing(error):
        def reader(*args):
            yield readers.Record("line 1", "x")
            raise error
        return reader

    monkeypatch.setitem(readers.READERS, "jsonl", failing(KeyError("surprise")))
    records = list(read_records(path, spec, 1 << 20))
    assert [(r.locator, r.error) for r in records] == [("line 1", None), ("after line 1", "reader_error: KeyError")]
    for fatal in (MemoryError(), InputError("the user's to fix")):
        monkeypatch.setitem(readers.READERS, "jsonl", failing(fatal))
        with pytest.raises(type(fatal)):
            list(read_records(path, spec, 1 << 20))
