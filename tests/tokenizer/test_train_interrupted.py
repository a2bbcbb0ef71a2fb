"""A tokenizer run that dies while it writes (here: the disk fills on its last file) leaves neither the old
manifest nor a tokenizer.json: `data pack` refuses the folder until a rerun writes it whole."""

from __future__ import annotations

import errno
import json

import pytest
from triglot.tokenizer import train
from triglot.tokenizer.pack import run_pack_stage

from tests.tokenizer.tokenizer_corpus import tokenizer_config
from triglot.errors import InputError
from triglot.paths import stage_dir

SMALL = ["tokenizer.vocab_size=600", "tokenizer.sample_chars=60000", "tokenizer.fertility_docs=20",
         "pack.docs_per_shard=400", "pack.workers=1"]


def test_a_retrain_that_dies_leaves_a_folder_pack_refuses(clean_data, tmp_path, monkeypatch):
    cfg = tokenizer_config(tmp_path, clean_data[0], *SMALL,
                           "tokenizer.compare=[{name: bpe-700, backend: bpe, vocab_size: 700}]")
    out = stage_dir(cfg, "tokenizer")
    train.run_tokenizer_stage(cfg)
    assert (out / "manifest.json").is_file() and (out / "compare/bpe-700/tokenizer.json").is_file()

    def full_disk(report, folder):
        (folder / "fertility.json").write_text(json.dumps(report)[:100], encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train, "write_fertility", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train.run_tokenizer_stage(cfg, force=True)
    monkeypatch.undo()
    left = sorted(p.name for p in out.iterdir())
    assert "manifest.json" not in left and "tokenizer.json" not in left, left
    assert "_training" not in left  # what was written aside is removed: the space comes back
    with pytest.raises(InputError, match="tokenizer.json not found"):
        run_pack_stage(cfg)

    manifest = train.run_tokenizer_stage(cfg)
    names = {p.rsplit("/", 1)[-1] for p in (e["path"] for e in manifest["outputs"])}
    assert {"tokenizer.json", "tokenizer_config.json", "fertility.json", "fertility.md"} <= names
    assert not (out / "_training").exists() and (out / "compare/bpe-700/tokenizer.json").is_file()
    assert json.loads((out / "fertility.json").read_text(encoding="utf-8"))
    assert run_pack_stage(cfg)["counts"]["documents"] == len(clean_data[1])
