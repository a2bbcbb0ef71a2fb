"""Readers for every input shape; each yields Records in file order, bad input as Records with an error.

Formats: jsonl, json, csv, tsv, text (line/paragraph/file), parquet, wikiextractor, html, warc, wet;
.gz and .zst/.zstd files are decompressed on the fly, UTF-16/32 text is re-encoded as UTF-8. A reader
never raises on bad content, and `read_records` turns any other failure into one counted error.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from triglot.data_pipeline.streams import BROKEN as _BROKEN
from triglot.data_pipeline.streams import is_binary as _is_binary
from triglot.data_pipeline.streams import open_binary, text_encoding

from triglot.errors import TriglotError

FORMATS = ("jsonl", "json", "csv", "tsv", "text", "parquet", "wikiextractor", "html", "warc", "wet")
_CANNOT_OPEN = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_FATAL = (MemoryError, TriglotError)  # never turned into a counted record
@dataclass
class Record:
    locator: str  # where in the file: "line 12", "row 7", "doc 12", "record 3"
    text: str | None = None
    error: str | None = None  # reason when the record could not be read
    meta: dict = field(default_factory=dict)


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
    """The line as text without its line ending; None when it is not UTF-8."""
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


def record_of(locator: str, obj: Any, spec) -> Record:
    """The record's `text_field`, or its `text_fields` joined by a blank line (numbers allowed there).
    An object, list or bool (or a number as the whole text) is `not_text`, never serialised as JSON."""
    names = list(spec.text_fields) or [spec.text_field]
    values = [get_field(obj, name) for name in names]
    if all(v is None for v in values):
        return Record(locator, error="missing_field")
    parts = []
    for value in values:
        if value is None or value == "":
            continue
        if isinstance(value, str):
            parts.append(value)
        elif spec.text_fields and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(str(value))
        else:
            return Record(locator, error="not_text")
    return Record(locator, "\n\n".join(parts))


def _lines_then(path: Path, spec, max_bytes: int, handle: Callable[[int, str], Record | None],
                byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    with open_binary(path) as fh:
        for number, raw, error in iter_lines(fh, max_bytes, byte_range):
            if error:
                yield Record(f"line {number}", error=error)
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
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
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
            return Record(f"line {number}", error="bad_json")
        return record_of(f"line {number}", obj, spec)

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


class _ReplayableLines:
    """Physical lines for csv.reader that remember those of the current row, so that after a bad row
    the lines after its first are parsed again: an unterminated quote costs one row, not the rest."""

    def __init__(self, lines: IO[str]):
        self._lines, self._again, self._taken = lines, deque(), []

    def __iter__(self) -> _ReplayableLines:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._lines)
        self._taken.append(line)
        return line

    def start_row(self) -> None:
        self._taken = []

    def replay_after_first(self) -> None:
        self._again.extendleft(reversed(self._taken[1:]))
        self._taken = []


def read_delimited(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    csv.field_size_limit(max_bytes)
    delimiter = "\t" if spec.format == "tsv" else ","
    with open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        lines = _ReplayableLines(text)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        row = 0
        while True:
            lines.start_row()
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # strict: a stray or unterminated quote
                yield Record(f"row {row + 1}", error="record_too_long" if "field larger" in str(err) else "bad_csv")
                row += 1
                lines.replay_after_first()
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                continue
            except _BROKEN:
                yield Record(f"row {row + 1}", error="truncated_or_corrupt_compressed")
                return
            if not values:
                continue  # a blank line, as csv.DictReader skips it
            row += 1
            if header is None:
                header = values
                continue
            value = dict(zip(header, values, strict=False)).get(spec.text_field)
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
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        yield Record("file", error="invalid_utf8")
        return
    except (ValueError, RecursionError):
        yield Record("file", error="bad_json")
        return
    records = get_field(obj, spec.records_field) if spec.records_field else obj
    for i, item in enumerate(records if isinstance(records, list) else [records]):
        yield record_of(f"record {i}", item, spec)


def read_parquet(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    columns = sorted({name.split(".")[0] for name in (list(spec.text_fields) or [spec.text_field])})
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=columns, batch_size=1024):
            for item in batch.to_pylist():
                yield record_of(f"row {row}", item, spec)
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


class HtmlTooDeep(ValueError):
    """The page nests its content deeper than lxml parses (2,048 elements, with huge_tree)."""


def _parsed_html(html: bytes | str, huge: bool) -> tuple[Any, bool]:
    """(lxml tree or None, whether libxml2 stopped at its depth limit)."""
    import lxml.html
    from trafilatura.utils import decode_file

    parser = lxml.html.HTMLParser(huge_tree=huge)
    try:  # decoded as trafilatura decodes it (lxml alone reads undeclared bytes as Latin-1)
        tree = lxml.html.fromstring(decode_file(html) if isinstance(html, bytes) else html, parser=parser)
    except Exception:  # noqa: BLE001 - an empty or undecodable page; trafilatura has said it holds nothing
        return None, False
    return tree, any("Excessive depth" in entry.message for entry in parser.error_log)


def extract_html(html: bytes | str, url: str | None = None) -> str:
    """Main content of a page (trafilatura), without comments; empty when nothing is found. A page that
    nests deeper than libxml2's default 256 levels is parsed again with huge_tree; deeper still, HtmlTooDeep."""
    import trafilatura

    def extract(page: Any) -> str:
        return trafilatura.extract(page, url=url, include_comments=False, include_tables=True,
                                   deduplicate=False, favor_precision=True) or ""

    text = extract(html)
    if text or not _parsed_html(html, huge=False)[1]:
        return text
    tree, too_deep = _parsed_html(html, huge=True)
    text = extract(tree) if tree is not None else ""
    if not text and too_deep:
        raise HtmlTooDeep(f"elements nested deeper than lxml parses{f' ({url})' if url else ''}")
    return text


def _html_record(locator: str, html: bytes, url: str | None = None) -> Record:
    try:
        return Record(locator, extract_html(html, url=url), meta={"url": url} if url else {})
    except _FATAL:
        raise
    except HtmlTooDeep:
        return Record(locator, error="html_too_deep")
    except Exception as err:  # lxml and trafilatura raise many types on damaged markup
        return Record(locator, error=f"html_parse_failed: {type(err).__name__}")


def read_html(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    data, error = _read_whole(path, max_bytes)
    if error:
        yield Record("file", error=error)
        return
    yield _html_record("file", data)


def _damaged(rec: Any) -> bool:
    """Whether the file ended before the record's Content-Length (warcio hides that EOF), or its bytes
    fail the record's WARC digest (a cut gzip member followed by other bytes inflates to junk)."""
    raw = rec.raw_stream
    while raw.read(1 << 16):
        pass
    return getattr(raw, "limit", 0) > 0 or rec.digest_checker.passed is False


def read_warc(path: Path, spec, max_bytes: int) -> Iterator[Record]:
    """WARC responses with HTML (main content extracted) or WET conversion records (text as is)."""
    from warcio.archiveiterator import ArchiveIterator

    wanted = "conversion" if spec.format == "wet" else "response"
    number = 0
    try:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, check_digests=True):
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
                elif _damaged(rec):
                    yield Record(locator, error="truncated_or_corrupt_compressed")
                    return
                elif wanted == "conversion":
                    text = _decode(payload)
                    yield Record(locator, error="invalid_utf8") if text is None else Record(locator, text, meta={"url": uri})
                else:
                    yield _html_record(locator, payload, uri)
    except Exception as err:  # warcio raises ArchiveLoadFailed, EOFError, zlib errors on damage
        yield Record(f"record {number + 1}", error=f"bad_warc: {type(err).__name__}")


READERS: dict[str, Callable[[Path, Any, int], Iterator[Record]]] = {
    "jsonl": read_jsonl, "json": read_json, "csv": read_delimited, "tsv": read_delimited, "text": read_text,
    "parquet": read_parquet, "wikiextractor": read_wikiextractor, "html": read_html, "warc": read_warc,
    "wet": read_warc,
}


def splits_by_bytes(spec, path: Path) -> bool:
    """Formats whose records are single lines can be split into byte ranges (uncompressed UTF-8 files only)."""
    line_based = spec.format == "jsonl" or (spec.format == "text" and spec.text_mode == "line")
    if not line_based or path.suffix.lower() in (".gz", ".zst", ".zstd") or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            return text_encoding(fh.read(4096)) is None
    except OSError:
        return False


def read_records(path: Path, spec, max_bytes: int, byte_range: tuple[int, int] | None = None) -> Iterator[Record]:
    """Records of one file (or of the lines starting in `byte_range`); an empty or binary file is one
    Record with that error, reported by the range that starts the file. A file that cannot be opened
    (gone, no permission, a dangling link) is `cannot_open`; any other failure ends the file with one
    `reader_error: <type>` record, so one odd file never stops the run."""
    first = not byte_range or byte_range[0] == 0
    last = None
    try:
        for record in _read_file(path, spec, max_bytes, byte_range, first):
            last = record.locator
            yield record
    except _FATAL:
        raise
    except _CANNOT_OPEN:
        where = f"after {last}" if last else "file" if first else f"bytes {byte_range[0]}-{byte_range[1]}"
        yield Record(where, error="cannot_open")
    except Exception as err:  # the safety net: a reader bug or an input nobody thought of
        yield Record(f"after {last}" if last else "file", error=f"reader_error: {type(err).__name__}")


def _read_file(path: Path, spec, max_bytes: int, byte_range: tuple[int, int] | None, first: bool
               ) -> Iterator[Record]:
    if not path.is_file():  # gone, a dangling link, or not a regular file (a FIFO would block)
        raise FileNotFoundError(f"not a regular file: {path}")
    try:
        with open_binary(path) as fh:
            head = fh.read(8192)
    except _CANNOT_OPEN:
        raise
    except _BROKEN:
        head = b"?"  # let the reader report how far it got
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
