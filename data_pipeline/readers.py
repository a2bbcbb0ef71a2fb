"""Readers for every input shape; each yields Records in file order, bad input as Records with an error.

Formats: jsonl, json, csv, tsv, text (line/paragraph/file), parquet, wikiextractor, html, warc, wet;
.gz and .zst/.zstd files are decompressed on the fly. A reader never raises on bad content.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

FORMATS = ("jsonl", "json", "csv", "tsv", "text", "parquet", "wikiextractor", "html", "warc", "wet")
_BROKEN = (EOFError, OSError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)


@dataclass
class Record:
    locator: str  # where in the file: "line 12", "row 7", "doc 12", "record 3"
    text: str | None = None
    error: str | None = None  # reason when the record could not be read
    meta: dict = field(default_factory=dict)


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it ends in .gz, .zst or .zstd."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix in (".zst", ".zstd"):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head


def _skip_line(fh: IO[bytes]) -> None:
    """Read past the end of the current line in bounded chunks (never the whole line in memory)."""
    while (chunk := fh.readline(1 << 20)) and not chunk.endswith(b"\n"):
        pass


def _seek_range(fh: IO[bytes], start: int) -> int:
    """Move to the first line that starts at or after byte `start`; returns the line number before it."""
    number = 0
    remaining = start
    while remaining > 0:
        block = fh.read(min(remaining, 1 << 24))
        if not block:
            break
        number += block.count(b"\n")
        remaining -= len(block)
    if start > 0:
        fh.seek(start - 1)
        if fh.read(1) != b"\n":
            _skip_line(fh)  # the line that straddles `start` belongs to the previous range
            number += 1
    return number


def iter_lines(fh: IO[bytes], max_bytes: int, byte_range: tuple[int, int] | None = None
               ) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line number, bytes, error) for each line (of lines starting inside `byte_range`, when given);
    an over-long line is skipped without loading it."""
    number = _seek_range(fh, byte_range[0]) if byte_range else 0
    end = byte_range[1] if byte_range else None
    while True:
        if end is not None and fh.tell() >= end:
            return
        try:
            line = fh.readline(max_bytes + 1)
        except _BROKEN:
            yield number + 1, None, "truncated_or_corrupt_compressed"
            return
        if not line:
            return
        number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            try:
                _skip_line(fh)
            except _BROKEN:
                yield number, None, "truncated_or_corrupt_compressed"
                return
            yield number, None, "record_too_long"
            continue
        yield number, line, None


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None


def get_field(obj: Any, path: str) -> Any:
    """Value at a dotted path; integer parts index lists (turns.0.text)."""
    for part in path.split("."):
        if isinstance(obj, list) and part.lstrip("-").isdigit():
            obj = obj[int(part)] if -len(obj) <= int(part) < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
        if obj is None:
            return None
    return obj


def text_of(obj: Any, spec) -> str | None:
    names = list(spec.text_fields) or [spec.text_field]
    parts = [get_field(obj, name) for name in names]
    parts = [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in parts if p not in (None, "")]
    if not parts and all(get_field(obj, n) is None for n in names):
        return None
    return "\n\n".join(parts)


def _lines_then(path: Path, spec, max_bytes: int, handle: Callable[[int, str], Record | None],
                byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    with open_binary(path) as fh:
        for number, raw, error in iter_lines(fh, max_bytes, byte_range):
            if error:
                yield Record(f"line {number}", error=error)
                continue
            line = _decode(raw)
            if line is None:
                yield Record(f"line {number}", error="invalid_utf8")
                continue
            record = handle(number, line)
            if record is not None:
                yield record


def read_jsonl(path: Path, spec, max_bytes: int, byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    def handle(number: int, line: str) -> Record | None:
        if not line.strip():
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return Record(f"line {number}", error="bad_json")
        text = text_of(obj, spec)
        if text is None:
            return Record(f"line {number}", error="missing_field")
        return Record(f"line {number}", text)

    yield from _lines_then(path, spec, max_bytes, handle, byte_range)


def read_text(path: Path, spec, max_bytes: int, byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    mode = spec.text_mode
    if mode == "line":
        yield from _lines_then(path, spec, max_bytes,
                               lambda n, line: Record(f"line {n}", line) if line.strip() else None, byte_range)
        return
    buffer: list[str] = []
    start = 1
    size = 0
    for record in _lines_then(path, spec, max_bytes, lambda n, line: Record(f"line {n}", line)):
        if record.error:
            yield record
            continue
        number = int(record.locator.split()[1])
        if mode == "paragraph" and not record.text.strip():
            if buffer:
                yield Record(f"line {start}", "\n".join(buffer))
            buffer, start, size = [], number + 1, 0
            continue
        buffer.append(record.text)
        size += len(record.text)
        if size > max_bytes:
            yield Record(f"line {start}", error="record_too_long")
            buffer, start, size = [], number + 1, 0
    if buffer and "\n".join(buffer).strip():
        yield Record(f"line {start}", "\n".join(buffer))


def read_delimited(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    csv.field_size_limit(max_bytes)
    delimiter = "\t" if spec.format == "tsv" else ","
    with open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text, delimiter=delimiter)
        row = 1
        while True:
            try:
                item = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield Record(f"row {row + 1}", error="record_too_long" if "field larger" in str(err) else "bad_csv")
                row += 1
                continue
            except _BROKEN:
                yield Record(f"row {row + 1}", error="truncated_or_corrupt_compressed")
                return
            row += 1
            value = item.get(spec.text_field)
            if value is None:
                yield Record(f"row {row}", error="missing_field")
            elif re.search("[\udc80-\udcff]", value):
                yield Record(f"row {row}", error="invalid_utf8")
            else:
                yield Record(f"row {row}", value)


def _read_whole(path: Path, max_bytes: int) -> tuple[bytes | None, str | None]:
    try:
        with open_binary(path) as fh:
            data = fh.read(max_bytes + 1)
    except _BROKEN:
        return None, "truncated_or_corrupt_compressed"
    if len(data) > max_bytes:
        return None, "record_too_long"
    return data, None


def read_json(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    data, error = _read_whole(path, max(max_bytes, 1 << 30))
    if error:
        yield Record("file", error=error)
        return
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        yield Record("file", error="invalid_utf8")
        return
    except json.JSONDecodeError:
        yield Record("file", error="bad_json")
        return
    records = get_field(obj, spec.records_field) if spec.records_field else obj
    for i, item in enumerate(records if isinstance(records, list) else [records]):
        text = text_of(item, spec)
        yield Record(f"record {i}", error="missing_field") if text is None else Record(f"record {i}", text)


def read_parquet(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    columns = sorted({name.split(".")[0] for name in (list(spec.text_fields) or [spec.text_field])})
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=columns, batch_size=1024):
            for item in batch.to_pylist():
                text = text_of(item, spec)
                yield Record(f"row {row}", error="missing_field") if text is None else Record(f"row {row}", text)
                row += 1
    except Exception as err:  # pyarrow raises several types for damaged files
        yield Record(f"row {row}", error=f"bad_parquet: {type(err).__name__}")


_DOC_START = re.compile(r'<doc\s+([^>]*)>')
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def read_wikiextractor(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    """WikiExtractor output: <doc id= url= title=> blocks; the title line that opens each body is dropped."""
    attrs: dict | None = None
    body: list[str] = []
    for record in _lines_then(path, spec, max_bytes, lambda n, line: Record(f"line {n}", line)):
        if record.error:
            yield record
            continue
        line = record.text
        start = _DOC_START.match(line.strip())
        if start:
            if attrs is not None:
                yield Record(f"doc {attrs.get('id', '?')}", error="unterminated_doc")
            attrs, body = dict(_ATTR.findall(start.group(1))), []
        elif line.strip() == "</doc>" and attrs is not None:
            if body and body[0].strip() == attrs.get("title", "").strip():
                body = body[1:]
            yield Record(f"doc {attrs.get('id', '?')}", "\n".join(body), meta=attrs)
            attrs = None
        elif attrs is not None:
            body.append(line)
    if attrs is not None:
        yield Record(f"doc {attrs.get('id', '?')}", error="unterminated_doc")


def extract_html(html: bytes | str, url: str | None = None) -> str:
    """Main content of a page (trafilatura), without comments; empty when nothing is found."""
    import trafilatura

    return trafilatura.extract(html, url=url, include_comments=False, include_tables=True,
                               deduplicate=False, favor_precision=True) or ""


def read_html(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    data, error = _read_whole(path, max_bytes)
    if error:
        yield Record("file", error=error)
        return
    try:
        yield Record("file", extract_html(data))
    except Exception as err:  # lxml and trafilatura raise many types on damaged markup
        yield Record("file", error=f"html_parse_failed: {type(err).__name__}")


def read_warc(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    """WARC responses with HTML (main content extracted) or WET conversion records (text as is)."""
    from warcio.archiveiterator import ArchiveIterator

    wanted = "conversion" if spec.format == "wet" else "response"
    number = 0
    try:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != wanted:
                    continue
                number += 1
                uri = rec.rec_headers.get_header("WARC-Target-URI")
                locator = f"record {number}"
                if wanted == "response":
                    ctype = (rec.http_headers.get_header("Content-Type") or "") if rec.http_headers else ""
                    if "html" not in ctype.lower():
                        number -= 1
                        continue
                payload = rec.content_stream().read(max_bytes + 1)
                if len(payload) > max_bytes:
                    yield Record(locator, error="record_too_long")
                elif wanted == "conversion":
                    text = _decode(payload)
                    yield Record(locator, error="invalid_utf8") if text is None else Record(locator, text, meta={"url": uri})
                else:
                    yield Record(locator, extract_html(payload, url=uri), meta={"url": uri})
    except Exception as err:  # warcio raises ArchiveLoadFailed, EOFError, zlib errors on damage
        yield Record(f"record {number + 1}", error=f"bad_warc: {type(err).__name__}")


READERS: dict[str, Callable[[Path, Any, int], Iterator[Record]]] = {
    "jsonl": read_jsonl, "json": read_json, "csv": read_delimited, "tsv": read_delimited, "text": read_text,
    "parquet": read_parquet, "wikiextractor": read_wikiextractor, "html": read_html, "warc": read_warc,
    "wet": read_warc,
}


def splits_by_bytes(spec, path: Path) -> bool:
    """Formats whose records are single lines can be split into byte ranges (uncompressed files only)."""
    line_based = spec.format == "jsonl" or (spec.format == "text" and spec.text_mode == "line")
    return line_based and path.suffix.lower() not in (".gz", ".zst", ".zstd")


def read_records(path: Path, spec, max_bytes: int, byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    """Records of one file (or of the lines starting in `byte_range`); an empty or binary file is one
    Record with that error, reported by the range that starts the file."""
    try:
        with open_binary(path) as fh:
            head = fh.read(8192)
    except _BROKEN:
        head = b"?"  # let the reader report how far it got
    except OSError:
        yield Record("file", error="cannot_open")
        return
    first = not byte_range or byte_range[0] == 0
    if not head:
        if first:
            yield Record("file", error="empty_file")
        return
    if _is_binary(head) and spec.format not in ("parquet", "warc", "wet"):
        if first:
            yield Record("file", error="binary_file")
        return
    if byte_range:
        yield from READERS[spec.format](path, spec, max_bytes, byte_range)
    else:
        yield from READERS[spec.format](path, spec, max_bytes)
