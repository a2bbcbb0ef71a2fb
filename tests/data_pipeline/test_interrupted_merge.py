"""A clean run that dies in its merge (killed, or out of disk) leaves no folder the tokenizer or pack read
as whole, and a rerun writes what an uninterrupted run writes."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from triglot.data_pipeline.clean import run_clean_stage
from triglot.tokenizer.sample import clean_files

from triglot.config import load_config
from triglot.errors import InputError

# Runs `triglot ARGS...` with the merge's part writer ending the process as kill -9 would: when part AFTER
# is opened (all earlier parts closed: "between") or right after part AFTER's first rows ("inside").
DYING_WRITER = """
import os, sys
import pyarrow.parquet as pq
AFTER, MODE = int(sys.argv[1]), sys.argv[2]
opened = []

class DyingWriter(pq.ParquetWriter):
    def __init__(self, where, *args, **kwargs):
        if os.path.basename(str(where)).startswith("part-"):
            opened.append(where)
            if MODE == "between" and len(opened) > AFTER:
                os._exit(137)
        super().__init__(where, *args, **kwargs)

    def write_table(self, table, *args, **kwargs):
        super().write_table(table, *args, **kwargs)
        if MODE == "inside" and len(opened) > AFTER:
            os._exit(137)

pq.ParquetWriter = DyingWriter
from triglot.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _experiment(tmp_path: Path, shared_data: Path, name: str) -> Path:
    """300 DRCD paragraphs (30 of them repeated) cleaned into parts of 20 rows: about 14 parts."""
    lines = (shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl").read_text(encoding="utf-8").splitlines()
    inputs = tmp_path / "in"
    if not inputs.is_dir():
        inputs.mkdir()
        (inputs / "a.jsonl").write_text("\n".join(lines[:300] + lines[:30]) + "\n", encoding="utf-8")
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"name": name, "dir": str(tmp_path / name)},
        "data": {"sources": [{"name": "drcd", "paths": [str(inputs / "*.jsonl")], "format": "jsonl",
                              "language": "zh-Hant"}], "rows_per_part": 20, "workers": 1},
        "tokenizer": {"vocab_size": 400, "sample_chars": 20000}}), encoding="utf-8")
    return config


def _rows(out: Path) -> list[dict]:
    return [row for part in sorted(out.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]


def _triglot(*args: str, hook: tuple[int, str] | None = None) -> subprocess.CompletedProcess:
    prefix = ["-c", DYING_WRITER, str(hook[0]), hook[1]] if hook else ["-m", "triglot"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, timeout=600)


def _assert_refused(proc: subprocess.CompletedProcess, out: Path) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and str(out) in lines[0] and "triglot data clean" in lines[0], proc.stderr[-2000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shared_data) -> list[dict]:
    tmp = tmp_path_factory.mktemp("whole")
    run_clean_stage(load_config(_experiment(tmp, shared_data, "whole")))
    rows = _rows(tmp / "whole/data/clean")
    assert len(list((tmp / "whole/data/clean").glob("part-*.parquet"))) >= 10
    return rows


@pytest.mark.parametrize("mode", ["between", "inside"])
def test_a_first_merge_killed_midway_leaves_nothing_that_looks_whole(tmp_path, shared_data, uninterrupted, mode):
    config = _experiment(tmp_path, shared_data, "run")
    out = tmp_path / "run/data/clean"
    crashed = _triglot("data", "clean", str(config), hook=(5, mode))
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert not (out / "manifest.json").exists() and not (out / "report.json").exists()
    # Parts take their final names only when every one is whole: none is there yet, half written or not.
    assert not list(out.glob("part-*.parquet"))
    _assert_refused(_triglot("tokenizer", "train", str(config)), out)
    _assert_refused(_triglot("data", "pack", str(config)), out)

    again = _triglot("data", "clean", str(config))
    assert again.returncode == 0, again.stderr[-2000:]
    assert _rows(out) == uninterrupted
    assert not (out / "_merging").exists()
    assert clean_files(out) == sorted(out.glob("part-*.parquet"))


def test_a_rerun_killed_midway_withdraws_the_old_manifest(tmp_path, shared_data, uninterrupted):
    config = _experiment(tmp_path, shared_data, "run")
    out = tmp_path / "run/data/clean"
    assert _triglot("data", "clean", str(config)).returncode == 0
    crashed = _triglot("data", "clean", str(config), "--force", hook=(5, "between"))
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    # The old manifest would claim the old parts; it and the reports go before any part is replaced.
    assert not [p.name for p in out.iterdir() if p.name in ("manifest.json", "report.json", "report.md")]
    _assert_refused(_triglot("data", "pack", str(config)), out)

    assert _triglot("data", "clean", str(config)).returncode == 0
    assert _rows(out) == uninterrupted


def test_a_full_disk_in_the_merge_leaves_the_folder_refused(tmp_path, shared_data, uninterrupted, monkeypatch):
    cfg = load_config(_experiment(tmp_path, shared_data, "run"))
    out = tmp_path / "run/data/clean"
    run_clean_stage(cfg)
    written = []

    class FullDisk(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            written.append(table.num_rows)
            if len(written) > 7:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().write_table(table, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)
    with pytest.raises(OSError, match="No space left"):
        run_clean_stage(cfg, force=True)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists() and not (out / "report.json").exists()
    assert not (out / "_merging").exists()  # the parts written aside are removed: the space comes back
    with pytest.raises(InputError, match="rerun `triglot data clean`"):
        clean_files(out)

    manifest = run_clean_stage(cfg)
    assert _rows(out) == uninterrupted
    assert manifest["parts"] == [p.name for p in clean_files(out)]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["parts"] == manifest["parts"]
