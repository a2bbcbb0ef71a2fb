"""The packed-token format round-trips documents and picks the narrowest safe dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from triglot.errors import InputError
from triglot.packed import PackedDataset, ShardWriter, token_dtype, write_meta


def test_dtype_choice() -> None:
    assert token_dtype(8000) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    assert token_dtype(70000) == np.uint32


def test_round_trip_across_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 70000, size=rng.integers(1, 50)).tolist() + [1] for _ in range(30)]
    shards = []
    for s in range(3):
        writer = ShardWriter(tmp_path, f"shard-{s:05d}", token_dtype(70000))
        batch = docs[s * 10:(s + 1) * 10]
        languages = ["yue" if i % 2 else "en" for i in range(10)]
        if s == 1:  # one document at a time, and in batches (what `data pack` writes)
            writer.add_many(batch[:4], languages[:4], ["src"] * 4, [f"{s}-{i}" for i in range(4)])
            writer.add_many(batch[4:], languages[4:], ["src"] * 6, [f"{s}-{i}" for i in range(4, 10)])
        else:
            for i, doc in enumerate(batch):
                writer.add(doc, language=languages[i], source="src", doc_id=f"{s}-{i}")
        shards.append(writer.close())
    write_meta(tmp_path, dtype=token_dtype(70000), vocab_size=70000, eos_id=1, shards=shards)
    data = PackedDataset(tmp_path)
    assert len(data) == 30 and data.num_tokens == sum(map(len, docs))
    assert data.dtype == np.uint32
    for i, doc in enumerate(docs):
        assert data.tokens(i).tolist() == doc
    assert data.document(11).doc_id == "1-1" and data.document(11).language == "yue"
    assert data.document(15).doc_id == "1-5" and data.document(15).language == "yue"


def test_out_of_range_ids_are_refused_not_truncated(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "shard-00000", np.uint16)
    with pytest.raises(ValueError, match="out of range"):
        writer.add([70000])
    with pytest.raises(ValueError, match="out of range"):
        writer.add_many([[1, 2], [3, 70000]], ["en", "en"], ["s", "s"], ["a", "b"])


def test_incomplete_folder_is_an_error(tmp_path: Path) -> None:
    ShardWriter(tmp_path, "shard-00000", np.uint16).close()
    with pytest.raises(InputError, match="meta.json not found: a pack was interrupted"):
        PackedDataset(tmp_path)
