"""`data pack`: every document decodes back to its cleaned text, dtype follows the vocabulary, resumes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from triglot.tokenizer.pack import run_pack_stage
from triglot.tokenizer.train import run_tokenizer_stage

from tests.tokenizer.tokenizer_corpus import tokenizer_config
from triglot.errors import InputError
from triglot.packed import PackedDataset
from triglot.paths import stage_dir


def _check_every_document(cfg, rows, bos: bool = False) -> PackedDataset:
    data = PackedDataset(stage_dir(cfg, "pack"))
    start = 1 if bos else 0
    tok = Tokenizer.from_file(f"{data.meta['tokenizer']}/tokenizer.json")
    assert len(data) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for i in range(len(data)):
        doc = data.document(i)
        row = by_id[doc.doc_id]
        assert doc.tokens[-1] == data.eos_id
        if bos:
            assert doc.tokens[0] == data.meta["bos_id"], doc.doc_id
        assert (doc.language, doc.source) == (row["language"], row["source"])
        assert tok.decode(doc.tokens[start:-1].tolist(), skip_special_tokens=False) == row["text"], doc.doc_id
    return data


def test_pack_decodes_every_document_uint16(bpe_run, clean_data, tmp_path):
    _, rows = clean_data
    cfg = tokenizer_config(tmp_path, clean_data[0], f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}",
                           "pack.docs_per_shard=150", "pack.workers=2")
    manifest = run_pack_stage(cfg)
    data = _check_every_document(cfg, rows)
    assert data.dtype == np.uint16 and data.vocab_size == 8000
    assert data.meta["bos_id"] is not None and data.meta["pad_id"] is not None
    assert len(data.shard_names) == 6  # 2 files of ~365 rows in shards of 150 documents
    counts = manifest["counts"]
    assert counts["tokens"] == data.num_tokens and counts["documents"] == len(rows)
    by_language, by_source = Counter(), Counter()
    for lang, src, n in zip(data.languages, data.sources, data.lengths, strict=True):
        by_language[lang] += int(n)
        by_source[src] += int(n)
    assert counts["tokens_by_language"] == dict(by_language)
    assert counts["tokens_by_source"] == dict(by_source)
    assert set(by_language) == {"en", "zh-Hans", "zh-Hant", "yue", "mixed", "other"}
    # The hashes the shard writers took of the bytes as they wrote them are the files' own.
    from triglot.manifest import sha256_file

    entries = {Path(e["path"]).name: e["sha256"] for e in manifest["outputs"]}
    assert len([n for n in entries if n.startswith("shard-")]) == 12
    assert all(sha256_file(stage_dir(cfg, "pack") / name) == digest for name, digest in entries.items())
    # The workers' time, and the part of it spent in the tokenizer.
    assert 0 < manifest["worker_seconds"]["encode"] < manifest["worker_seconds"]["task"]
    # Unchanged inputs: the stage skips itself.
    assert run_pack_stage(cfg)["timings"] == manifest["timings"]


def test_add_bos_starts_every_document_with_bos(bpe_run, clean_data, tmp_path):
    cfg = tokenizer_config(tmp_path, clean_data[0], f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}",
                           "pack.docs_per_shard=300", "pack.workers=1", "pack.add_bos=true")
    counts = run_pack_stage(cfg)["counts"]
    data = _check_every_document(cfg, clean_data[1], bos=True)
    assert data.meta["add_bos"] is True and counts["tokens"] == data.num_tokens
    assert sum(1 for i in range(len(data)) if data.tokens(i)[0] == data.meta["bos_id"]) == len(data)


def test_pack_resumes_by_shard(bpe_run, clean_data, tmp_path):
    cfg = tokenizer_config(tmp_path, clean_data[0], f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}",
                           "pack.docs_per_shard=200", "pack.workers=1")
    first = run_pack_stage(cfg)
    out = stage_dir(cfg, "pack")
    # Simulate an interruption: meta and manifest not yet written, one shard never finished.
    (out / "manifest.json").unlink()
    (out / "meta.json").unlink()
    for path in out.glob("shard-00001.*"):
        path.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-00000.*")}
    second = run_pack_stage(cfg)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-00000.*")} == kept
    assert (out / "shard-00001.bin").is_file()
    assert second["counts"] == first["counts"]
    _check_every_document(cfg, clean_data[1])


def test_70k_vocabulary_packs_uint32(clean_data, tmp_path):
    cfg = tokenizer_config(tmp_path, clean_data[0], "tokenizer.vocab_size=70000", "tokenizer.min_frequency=1",
                           "tokenizer.sample_chars=5000000", "tokenizer.language_ratios={en: 1, zh-Hans: 1, "
                           "zh-Hant: 1, yue: 1, mixed: 1, other: 1}", "pack.workers=2", "pack.docs_per_shard=400")
    run_tokenizer_stage(cfg)
    run_pack_stage(cfg)
    data = _check_every_document(cfg, clean_data[1])
    assert data.vocab_size == 70000 and data.dtype == np.uint32
    assert int(max(t.max() for t in (data.tokens(i) for i in range(len(data))))) >= 65536
    meta = json.loads((stage_dir(cfg, "pack") / "meta.json").read_text())
    assert meta["dtype"] == "uint32"


def test_crashed_repack_leaves_no_meta_and_training_refuses_the_folder(bpe_run, clean_data, tmp_path):
    from triglot.train.trainer import resolve_inputs

    rows = clean_data[1][:450]
    clean = tmp_path / "clean"
    clean.mkdir()
    part = clean / "part-00000.parquet"
    columns = ["id", "text", "language", "source"]
    pq.write_table(pa.table({c: [r[c] for r in rows] for c in columns}), part)
    cfg = tokenizer_config(tmp_path, clean, f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}",
                           "pack.docs_per_shard=200", "pack.workers=1")
    out = stage_dir(cfg, "pack")
    run_pack_stage(cfg)
    assert (out / "meta.json").is_file()
    first_done = (out / "shard-00000.done.json").stat().st_mtime_ns
    # New input whose second shard cannot be encoded (a null text, which the file's statistics do not show,
    # so the check before any work misses it and the shard's own check finds it): the repack dies after shard 0.
    texts = [r["text"] for r in rows]
    texts[250] = None
    table = pa.table({c: [r[c] for r in rows] for c in columns}).set_column(1, "text", pa.array(texts, pa.string()))
    pq.write_table(table, part, write_statistics=False)
    with pytest.raises(InputError, match=r"part-00000.parquet has a null text in row 250"):
        run_pack_stage(cfg)
    assert (out / "shard-00000.done.json").stat().st_mtime_ns > first_done  # a new shard next to old ones
    assert not (out / "meta.json").exists() and not (out / "manifest.json").exists()
    with pytest.raises(InputError, match="meta.json"):
        resolve_inputs(cfg)
    with pytest.raises(InputError, match="pack was interrupted"):
        PackedDataset(out)


def test_consumers_reuse_the_hashes_the_pack_recorded(bpe_run, clean_data, tmp_path):
    import os
    from pathlib import Path

    from triglot.manifest import StageManifest, sha256_file

    cfg = tokenizer_config(tmp_path, clean_data[0], f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}",
                           "pack.docs_per_shard=200", "pack.workers=1")
    recorded = {Path(e["path"]).name: e for e in run_pack_stage(cfg)["outputs"]}
    out = stage_dir(cfg, "pack")
    shard = out / "shard-00000.bin"
    assert {"size", "mtime_ns", "sha256"} <= recorded[shard.name].keys() and "meta.json" in recorded

    def consumer_hashes(folder) -> dict[str, str]:  # what training does on every rank at every start
        manifest = StageManifest.open(tmp_path / "checkpoints", "train", {"model": "x"}, [folder])
        return {Path(e["path"]).name: e["sha256"] for e in manifest.inputs}

    # Other bytes of the same length, mtime put back: only a cache hit still gives the recorded hash.
    stat = shard.stat()
    data = bytearray(shard.read_bytes())
    data[0] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for spelling in (out, os.path.relpath(out)):  # the pack's own name for the folder, and another
        assert consumer_hashes(spelling)[shard.name] == recorded[shard.name]["sha256"] != sha256_file(shard)
    # A changed mtime is hashed again.
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert consumer_hashes(out)[shard.name] == sha256_file(shard)


def test_thread_and_process_workers_write_the_same_shards(bpe_run, clean_data, tmp_path):
    """Up to THREAD_WORKERS workers are threads of the packing process, more are spawned processes: both
    write byte for byte what a single worker writes, and a failing shard stops either pool with its error."""
    from triglot.tokenizer import pack

    digests = {}
    for workers in (1, 2, pack.THREAD_WORKERS + 1):
        cfg = tokenizer_config(tmp_path / f"w{workers}", clean_data[0], "pack.docs_per_shard=100",
                               f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}", f"pack.workers={workers}")
        manifest = run_pack_stage(cfg)
        digests[workers] = {Path(e["path"]).name: e["sha256"] for e in manifest["outputs"]
                            if Path(e["path"]).name.startswith("shard-")}
    assert len(digests[1]) == 16 and digests[1] == digests[2] == digests[pack.THREAD_WORKERS + 1]

    rows = clean_data[1][:450]
    clean = tmp_path / "broken"
    clean.mkdir()
    texts = [r["text"] for r in rows]
    texts[250] = None  # the third shard cannot be encoded (no statistics: only the shard's own check sees it)
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "text": pa.array(texts, pa.string()),
                             "language": [r["language"] for r in rows], "source": [r["source"] for r in rows]}),
                   clean / "part-00000.parquet", write_statistics=False)
    for workers in (2, pack.THREAD_WORKERS + 1):
        cfg = tokenizer_config(tmp_path / f"b{workers}", clean, "pack.docs_per_shard=100",
                               f"pack.tokenizer_dir={stage_dir(bpe_run, 'tokenizer')}", f"pack.workers={workers}")
        with pytest.raises(InputError, match="null text in row 250"):
            run_pack_stage(cfg)
        assert not (stage_dir(cfg, "pack") / "meta.json").exists()
