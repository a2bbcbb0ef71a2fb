"""The packed-token format that `data pack` writes and training reads.

A packed folder holds `meta.json` (dtype, vocabulary, special ids, shard list) and per shard a flat
token file `<shard>.bin` (every document followed by EOS) plus `<shard>.idx.parquet` (offset,
length, language, source, doc_id per document). Shards are written aside and renamed into place;
`data pack` removes `meta.json` before it writes any shard and writes it last, so a folder with
`meta.json` is complete and one without it is refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from triglot.errors import InputError

FORMAT = "triglot-packed/1"
META = "meta.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, uint32 otherwise."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= np.iinfo(np.uint16).max + 1:
        return np.dtype(np.uint16)
    if vocab_size <= np.iinfo(np.uint32).max + 1:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


class ShardWriter:
    """Appends documents to one shard; `close()` moves the finished files into place."""

    def __init__(self, folder: str | os.PathLike, name: str, dtype: np.dtype):
        self.folder = Path(folder)
        self.name = name
        self.dtype = np.dtype(dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._bin_tmp = self.folder / f"{name}.bin.tmp"
        self._bin = open(self._bin_tmp, "wb")
        self._digest = hashlib.sha256()  # of the bytes as they are written: the manifest need not read them back
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self._languages: list[str] = []
        self._sources: list[str] = []
        self._doc_ids: list[str] = []
        self.tokens = 0

    def add(self, token_ids: Any, language: str = "", source: str = "", doc_id: str = "") -> None:
        ids = np.asarray(token_ids)
        self._write(ids, doc_id)
        self._offsets.append(self.tokens)
        self._lengths.append(int(ids.size))
        self._languages.append(language)
        self._sources.append(source)
        self._doc_ids.append(doc_id)
        self.tokens += int(ids.size)

    def add_many(self, documents: Sequence[Sequence[int]], languages: Sequence[str], sources: Sequence[str],
                 doc_ids: Sequence[str]) -> None:
        """Append a batch of documents with one array conversion and one write."""
        if not documents:
            return
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        ids = np.fromiter(itertools.chain.from_iterable(documents), dtype=np.int64, count=int(lengths.sum()))
        self.add_flat(ids, lengths, languages, sources, doc_ids)

    def add_flat(self, ids: np.ndarray, lengths: np.ndarray, languages: Sequence[str], sources: Sequence[str],
                 doc_ids: Sequence[str]) -> None:
        """Append documents given as one concatenated id array and their lengths (what `data pack` calls)."""
        if not len(lengths):
            return
        if int(lengths.sum()) != ids.size:
            raise ValueError(f"lengths sum to {int(lengths.sum())} but {ids.size} token ids were given")
        self._write(ids, doc_ids[0] if len(doc_ids) == 1 else f"{len(doc_ids)} documents from {doc_ids[0]!r}")
        offsets = self.tokens + np.cumsum(lengths) - lengths
        self._offsets.extend(offsets.tolist())
        self._lengths.extend(lengths.tolist())
        self._languages.extend(languages)
        self._sources.extend(sources)
        self._doc_ids.extend(doc_ids)
        self.tokens += int(lengths.sum())

    def _write(self, ids: np.ndarray, what: str) -> None:
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token id out of range for {self.dtype} in document {what!r}")
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._digest.update(data)
        self._bin.write(data)

    def close(self) -> dict:
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        table = pa.table({
            "offset": pa.array(self._offsets, pa.int64()),
            "length": pa.array(self._lengths, pa.int32()),
            "language": pa.array(self._languages, pa.string()),
            "source": pa.array(self._sources, pa.string()),
            "doc_id": pa.array(self._doc_ids, pa.string()),
        })
        idx_tmp = self.folder / f"{self.name}.idx.parquet.tmp"
        pq.write_table(table, idx_tmp)
        files = [(self.folder / f"{self.name}.bin", self._digest.hexdigest()),
                 (self.folder / f"{self.name}.idx.parquet", hashlib.sha256(idx_tmp.read_bytes()).hexdigest())]
        os.replace(self._bin_tmp, files[0][0])
        os.replace(idx_tmp, files[1][0])
        # Manifest entries of the two files, for StageManifest.write(hashed=...).
        self.hashed = [{"path": str(path), "size": (st := path.stat()).st_size, "mtime_ns": st.st_mtime_ns,
                        "sha256": digest} for path, digest in files]
        return {"name": self.name, "tokens": self.tokens, "documents": len(self._offsets)}


def write_meta(folder: str | os.PathLike, *, dtype: np.dtype, vocab_size: int, eos_id: int,
               shards: list[dict], **extra: Any) -> Path:
    meta = {"format": FORMAT, "dtype": np.dtype(dtype).name, "vocab_size": vocab_size, "eos_id": eos_id,
            "shards": shards, **extra}
    path = Path(folder) / META
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class Document:
    tokens: np.ndarray
    language: str
    source: str
    doc_id: str


class PackedDataset:
    """Read-only view of a packed folder: documents by global index, tokens memory-mapped."""

    def __init__(self, folder: str | os.PathLike, key: str = "train.data_dir"):
        self.folder = Path(folder)
        self.key = key
        meta_path = self.folder / META
        redo = f"rerun `triglot data pack --force`, or point {key} at a finished packed folder"
        if not meta_path.is_file():
            state = "a pack was interrupted (shards but no meta.json)" if any(self.folder.glob("shard-*")) \
                else "not a packed folder"
            raise InputError(f"{key}: {meta_path} not found: {state}; run `triglot data pack` (it resumes) or "
                             f"point {key} at a finished packed folder")
        self.meta = self._read_meta(meta_path, redo)
        self.eos_id = int(self.meta["eos_id"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.shard_names = [str(s["name"]) for s in self.meta["shards"]]
        tables = [self._read_index(n, redo) for n in self.shard_names]
        self._shard_of = np.concatenate(
            [np.full(t.num_rows, i, dtype=np.int32) for i, t in enumerate(tables)]
        ) if tables else np.zeros(0, np.int32)
        self.index = pa.concat_tables(tables) if tables else None
        self.offsets = self.index.column("offset").to_numpy() if tables else np.zeros(0, np.int64)
        self.lengths = self.index.column("length").to_numpy() if tables else np.zeros(0, np.int32)
        self.languages = self.index.column("language").to_pylist() if tables else []
        self.sources = self.index.column("source").to_pylist() if tables else []
        self.doc_ids = self.index.column("doc_id").to_pylist() if tables else []
        self._tokens = [self._map_tokens(n, t, redo) for n, t in zip(self.shard_names, tables, strict=True)]

    def _read_meta(self, path: Path, redo: str) -> dict:
        """meta.json, checked: format, dtype, vocabulary size, end-of-document id and the shard list."""
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:  # not JSON, not UTF-8, unreadable
            raise InputError(f"{self.key}: {path} is damaged ({str(err).splitlines()[0]}); {redo}") from None
        problem = None
        if not isinstance(meta, dict):
            problem = "it is not a JSON object"
        elif meta.get("format") != FORMAT:
            problem = f"unknown format {meta.get('format')!r}, expected {FORMAT}"
        elif not isinstance(meta.get("shards"), list) or not all(
                isinstance(s, dict) and isinstance(s.get("name"), str) for s in meta["shards"]):
            problem = "its `shards` is not a list of {name: ...} entries"
        elif not all(isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool)
                     for k in ("vocab_size", "eos_id")) or meta["vocab_size"] < 1:
            problem = "its vocab_size and eos_id must be whole numbers, vocab_size at least 1"
        else:
            try:
                self.dtype = np.dtype(meta.get("dtype"))
            except TypeError:
                problem = f"dtype {meta.get('dtype')!r} is not a numpy integer type"
            else:
                if self.dtype.kind not in "ui":
                    problem = f"dtype {meta.get('dtype')!r} is not a numpy integer type"
        if problem:
            raise InputError(f"{self.key}: {path}: {problem}; {redo}")
        return meta

    def _read_index(self, name: str, redo: str) -> pa.Table:
        path = self.folder / f"{name}.idx.parquet"
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as err:  # missing, truncated, not parquet
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
            raise InputError(f"{self.key}: shard index {path} cannot be read ({reason}); {redo}") from None
        missing = [c for c in ("offset", "length", "language", "source", "doc_id") if c not in table.column_names]
        if missing:
            raise InputError(f"{self.key}: shard index {path} has no column {missing[0]!r}; {redo}")
        return table

    def _map_tokens(self, name: str, table: pa.Table, redo: str) -> np.ndarray:
        """The shard's tokens, memory-mapped, after checking the file holds every document its index lists."""
        path = self.folder / f"{name}.bin"
        try:
            size = path.stat().st_size
        except OSError as err:
            raise InputError(f"{self.key}: shard {path} cannot be read ({err.strerror}); {redo}") from None
        ends = table.column("offset").to_numpy() + table.column("length").to_numpy().astype(np.int64)
        need = int(ends.max()) * self.dtype.itemsize if table.num_rows else 0
        if size % self.dtype.itemsize or size < need:
            raise InputError(f"{self.key}: shard {path} is {size:,} bytes but its index needs {need:,} "
                             f"({self.dtype.name} tokens); it was cut short or overwritten; {redo}")
        if size == 0:
            return np.zeros(0, self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r")

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    def tokens(self, i: int) -> np.ndarray:
        shard = self._shard_of[i]
        start = int(self.offsets[i])
        ids = self._tokens[shard][start:start + int(self.lengths[i])]
        if ids.size and int(ids.max()) >= self.vocab_size:  # a few hundred ids: cheap beside a training step
            raise InputError(f"{self.key}: {self.folder / self.shard_names[shard]}.bin holds token id "
                             f"{int(ids.max())} in document {self.doc_ids[i]!r}, but meta.json says the "
                             f"vocabulary has {self.vocab_size}; repack with the tokenizer the model uses")
        return ids

    def document(self, i: int) -> Document:
        return Document(self.tokens(i), self.languages[i], self.sources[i], self.doc_ids[i])

    def __iter__(self) -> Iterator[Document]:
        for i in range(len(self)):
            yield self.document(i)
