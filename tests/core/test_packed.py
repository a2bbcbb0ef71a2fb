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


def _meta(folder: Path) -> dict:
    import json

    return json.loads((folder / "meta.json").read_text())


def _set_meta(folder: Path, **changes) -> None:
    import json

    (folder / "meta.json").write_text(json.dumps({**_meta(folder), **changes}))


def _cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


CORRUPTIONS = {
    "meta.json is not JSON": (lambda f: (f / "meta.json").write_text('{"format": '), "is damaged"),
    "meta.json is a list": (lambda f: (f / "meta.json").write_text("[1, 2]"), "not a JSON object"),
    "unknown format": (lambda f: _set_meta(f, format="triglot-packed/9"), "unknown format"),
    "no dtype": (lambda f: _set_meta(f, dtype=None), "not a numpy integer type"),
    "odd dtype": (lambda f: _set_meta(f, dtype="uint12"), "not a numpy integer type"),
    "vocabulary of 0": (lambda f: _set_meta(f, vocab_size=0), "vocab_size at least 1"),
    "index missing": (lambda f: (f / "shard-00000.idx.parquet").unlink(), "cannot be read"),
    "index cut short": (lambda f: _cut(f / "shard-00000.idx.parquet", 100), "cannot be read"),
    "tokens missing": (lambda f: (f / "shard-00000.bin").unlink(), "cannot be read"),
    "tokens emptied": (lambda f: _cut(f / "shard-00000.bin", 0), "cut short"),
    "tokens of odd size": (lambda f: _cut(f / "shard-00000.bin", (f / "shard-00000.bin").stat().st_size - 1),
                           "cut short"),
    "tokens cut short": (lambda f: _cut(f / "shard-00000.bin", 1000), "cut short"),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_a_damaged_pack_is_an_input_error_naming_the_key(tmp_path: Path, what: str) -> None:
    from triglot.testing import write_synthetic_pack

    folder = write_synthetic_pack(tmp_path / "packed", vocab_size=128, docs=40)
    damage, message = CORRUPTIONS[what]
    damage(folder)
    with pytest.raises(InputError, match=rf"^train\.val_dir: .*{message}"):
        PackedDataset(folder, key="train.val_dir")


def test_a_token_id_beyond_the_vocabulary_is_an_input_error(tmp_path: Path) -> None:
    from triglot.testing import write_synthetic_pack

    folder = write_synthetic_pack(tmp_path / "packed", vocab_size=128, docs=40)
    _set_meta(folder, vocab_size=16)  # the ids go up to 127
    packed = PackedDataset(folder)
    with pytest.raises(InputError, match=r"^train\.data_dir: .*holds token id \d+ in document .*vocabulary has 16"):
        for i in range(len(packed)):
            packed.tokens(i)
