"""Byte streams the readers read: .gz and .zst decompressed (a cut zstd frame raises), UTF-16/32 as UTF-8."""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from pathlib import Path
from typing import IO

import zstandard

# What reading a damaged compressed (or vanished) file raises.
BROKEN = (EOFError, OSError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)
# Bytes that text does not hold (controls other than tab, newlines, form feed, escape); a file whose first
# 8 KB are more than BINARY_SHARE of them is binary (random or compressed bytes: about 10%).
_CONTROL = bytes(sorted(set(range(32)) - {9, 10, 11, 12, 13, 27})) + b"\x7f"
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL)
BINARY_SHARE = 0.05
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class _Refilled(io.RawIOBase):
    """A raw stream of bytes that `_refill` makes from another stream (wrap it in io.BufferedReader)."""

    def __init__(self, fh: IO[bytes]):
        self._fh, self._out, self._pos = fh, b"", 0

    def readable(self) -> bool:
        return True

    def _refill(self) -> bool:
        """Set self._out to the next bytes; False at the end."""
        raise NotImplementedError

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._out):
            if not self._refill():
                return 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


class _ZstdFrames(_Refilled):
    """The decompressed bytes of every frame of a .zst file. At EOF inside a frame it raises ZstdError,
    where zstandard's stream_reader ends quietly (a truncated file would pass as whole)."""

    def __init__(self, fh: IO[bytes]):
        super().__init__(fh)
        self._dctx, self._frame = zstandard.ZstdDecompressor(), None

    def _refill(self) -> bool:
        chunk = self._fh.read(1 << 17)
        if not chunk:
            if self._frame is not None and not self._frame.eof:
                raise zstandard.ZstdError("the file ends inside a zstd frame (truncated)")
            return False
        out = []
        while chunk:
            if self._frame is None or self._frame.eof:
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(chunk))
            chunk = self._frame.unused_data if self._frame.eof else b""
        self._out, self._pos = b"".join(out), 0
        return True


class _Utf8Recoded(_Refilled):
    """UTF-16/32 text re-encoded as UTF-8, so that every reader sees UTF-8 (bad code units become U+FFFD)."""

    def __init__(self, fh: IO[bytes], encoding: str):
        super().__init__(fh)
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")

    def _refill(self) -> bool:
        chunk = self._fh.read(1 << 16)
        self._out, self._pos = self._decoder.decode(chunk, final=not chunk).encode("utf-8"), 0
        return bool(chunk) or bool(self._out)


def text_encoding(head: bytes) -> str | None:
    """"utf-16"/"utf-32" for a byte-order mark; "utf-16-le"/"-be" for BOM-less UTF-16, a head that looks
    binary as UTF-8 but decodes to printable text, the high byte of each code unit being the one with
    fewer distinct values (a script's block); else None (read as UTF-8)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    sample = head[: len(head) - len(head) % 2]
    if len(sample) < 64 or not is_binary(sample):
        return None
    name = "utf-16-le" if len(set(sample[1::2])) <= len(set(sample[0::2])) else "utf-16-be"
    try:
        text = sample.decode(name)
    except UnicodeDecodeError as err:  # random bytes hold lone surrogates; one cut pair at the end is fine
        if err.start < len(sample) - 4:
            return None
        text = sample[:err.start].decode(name)
    printable = sum(c.isprintable() or c.isspace() for c in text)
    return name if printable >= 0.95 * len(text) else None


def _decompressed(path: Path) -> IO[bytes]:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix in (".zst", ".zstd"):
        return io.BufferedReader(_ZstdFrames(open(path, "rb")))
    return open(path, "rb")


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it ends in .gz, .zst or .zstd, and as UTF-8 when they are UTF-16/32."""
    fh = _decompressed(path)
    try:
        encoding = text_encoding(fh.peek(4096)[:4096])
    except BROKEN:  # damaged from the start: a fresh stream lets the reader report it where it reads
        fh.close()
        return _decompressed(path)
    return io.BufferedReader(_Utf8Recoded(fh, encoding)) if encoding else fh


def is_binary(head: bytes) -> bool:
    """More than BINARY_SHARE of the bytes are controls that text does not hold."""
    return len(head.translate(None, _NOT_CONTROL)) > BINARY_SHARE * len(head)
