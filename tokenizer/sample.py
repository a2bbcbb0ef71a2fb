"""Reading the clean stage's parquet output, and drawing a language-balanced training sample from it.

Sampling is two streaming passes: count characters per language, then keep each document with a
per-language probability decided by a hash of (seed, id), so the sample is deterministic and bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from triglot.errors import InputError
from triglot.manifest import MANIFEST, StageManifest

COLUMNS = ("id", "text", "language", "source")
# Left in a folder by `triglot data clean` (its work units, a merge's parts not yet in place, its reports):
# such a folder is whole only when its manifest says so.
CLEAN_STAGE_SIGNS = ("_work", "_merging", "report.json", "report.md")


def clean_files(folder: str | Path) -> list[Path]:
    """Parquet shards of a clean-stage folder, checked before any work: the parts its manifest lists, each
    of the recorded size, readable, with the columns and no nulls in them. A folder `triglot data clean` never
    wrote (parquet made by hand, no manifest and none of CLEAN_STAGE_SIGNS) gives every part-*.parquet."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"clean data folder {folder} not found: run `triglot data clean` first "
                         "or point tokenizer.input_dir / pack.input_dir at it")
    if (folder / MANIFEST).exists() or any((folder / sign).exists() for sign in CLEAN_STAGE_SIGNS):
        files = _listed_parts(folder)
    else:
        files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise InputError(f"no part-*.parquet files in {folder}: run `triglot data clean` first")
    for path in files:
        check_file(path)
    return files


def _listed_parts(folder: Path) -> list[Path]:
    rerun = "rerun `triglot data clean`"
    manifest = StageManifest.load(folder)
    if manifest is None:
        raise InputError(f"{folder} has no readable {MANIFEST}: its `triglot data clean` did not finish; {rerun}")
    sizes = {Path(e["path"]).name: e.get("size") for e in manifest.get("outputs", []) if "path" in e}
    names = manifest.get("parts") or sorted(n for n in sizes if n.startswith("part-") and n.endswith(".parquet"))
    for name in names:
        path = folder / name
        if not path.is_file():
            raise InputError(f"{path}, listed in {folder / MANIFEST}, is missing; {rerun}")
        if sizes.get(name) is not None and path.stat().st_size != sizes[name]:
            raise InputError(f"{path} is {path.stat().st_size} bytes but {folder / MANIFEST} records "
                             f"{sizes[name]}; {rerun}")
    return [folder / name for name in names]


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """A parquet file that cannot be read (truncated, corrupt, not parquet) is an InputError naming it."""
    try:
        yield
    except (OSError, pa.ArrowException) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path} is not readable parquet ({reason}); rerun `triglot data clean` "
                         "or replace the file") from None


def check_file(path: Path, needed: tuple[str, ...] = COLUMNS) -> None:
    """The file opens as parquet, has the `needed` columns, and (where its statistics tell) no nulls in them."""
    with reading(path):
        pf = pq.ParquetFile(path)
        check_columns(path, pf.schema_arrow.names, needed)
        meta, first = pf.metadata, 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for i in range(group.num_columns):
                column, stats = group.column(i), group.column(i).statistics
                if column.path_in_schema in needed and stats is not None and stats.has_null_count \
                        and stats.null_count:
                    table = pf.read_row_group(g, columns=[column.path_in_schema])
                    check_no_nulls(path, table, first)
            first += group.num_rows


def check_columns(path: Path, names: list[str], needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in names]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)}; clean output needs {', '.join(COLUMNS)}")


def check_no_nulls(path: Path | str, table: pa.Table | pa.RecordBatch, first_row: int) -> None:
    """A null in any column of `table` (rows first_row... of `path`) is an InputError naming the row."""
    for name in table.schema.names:
        column = table.column(name)
        if column.null_count:
            row = first_row + pc.index(pc.is_null(column), True).as_py()
            raise InputError(f"{path} has a null {name} in row {row} (counting from 0); clean output has none: "
                             "rerun `triglot data clean` or fix the file")


def iter_documents(files: list[Path], batch_rows: int = 2048) -> Iterator[dict]:
    """Every document of the clean shards, as dicts with id, text, language, source."""
    for path in files:
        first = 0
        with reading(path):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
                check_no_nulls(path, batch, first)
                first += batch.num_rows
                yield from batch.to_pylist()


def chars_by_language(files: list[Path]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for path in files:
        first = 0
        with reading(path):
            for batch in pq.ParquetFile(path).iter_batches(columns=["text", "language"]):
                check_no_nulls(path, batch, first)
                first += batch.num_rows
                lengths = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
                for lang, n in zip(batch.column("language").to_pylist(), lengths, strict=True):
                    totals[lang] = totals.get(lang, 0) + int(n)
    return totals


def unit_hash(seed: int, doc_id: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the document id."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


@dataclass
class Sample:
    """Training texts by language, held-out texts for fertility, and what was asked versus taken."""

    train: dict[str, list[str]] = field(default_factory=dict)
    heldout: dict[str, list[str]] = field(default_factory=dict)
    available_chars: dict[str, int] = field(default_factory=dict)
    target_chars: dict[str, int] = field(default_factory=dict)
    taken_chars: dict[str, int] = field(default_factory=dict)

    def texts(self) -> list[str]:
        return [t for lang in sorted(self.train) for t in self.train[lang]]

    def summary(self) -> dict:
        return {"available_chars": self.available_chars, "target_chars": self.target_chars,
                "taken_chars": self.taken_chars, "documents": {k: len(v) for k, v in self.train.items()},
                "heldout_documents": {k: len(v) for k, v in self.heldout.items()}}


def draw_sample(files: list[Path], ratios: dict[str, float], total_chars: int, seed: int,
                heldout_docs: int) -> Sample:
    """Keep each document of language L with probability target(L) / available(L)."""
    available = chars_by_language(files)
    weight = sum(ratios.get(lang, 0.0) for lang in available)
    if weight <= 0:
        raise InputError(f"clean data has languages {sorted(available)} but tokenizer.language_ratios gives "
                         "none of them a positive share; add them to tokenizer.language_ratios")
    sample = Sample(available_chars=available)
    keep_p = {}
    for lang, chars in available.items():
        target = int(total_chars * ratios.get(lang, 0.0) / weight)
        sample.target_chars[lang] = target
        keep_p[lang] = min(1.0, target / chars) if chars else 0.0
    for doc in iter_documents(files):
        lang, text = doc["language"], doc["text"]
        if not text:
            continue
        u = unit_hash(seed, doc["id"])
        if u < keep_p[lang]:
            sample.train.setdefault(lang, []).append(text)
            sample.taken_chars[lang] = sample.taken_chars.get(lang, 0) + len(text)
        elif len(sample.heldout.setdefault(lang, [])) < heldout_docs:
            sample.heldout[lang].append(text)
    for lang, texts in sample.train.items():
        # A language wholly used for training is scored on (some of) its training text.
        if not sample.heldout.get(lang):
            sample.heldout[lang] = texts[:heldout_docs]
    return sample
