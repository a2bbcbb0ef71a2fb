"""`tokenizer train` and `data pack` read a clean folder only when it is whole: its manifest lists every part
at its recorded size, and each part is readable parquet with the clean columns and no nulls. Anything else
ends the command with exit 2 and one line naming the file (and the column or row)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from triglot.tokenizer.sample import clean_files

from triglot.config import compose
from triglot.errors import InputError

COLUMNS = ["id", "text", "language", "source"]


@pytest.fixture(scope="module")
def clean_run(shared_data, tmp_path_factory) -> Path:
    """A real `triglot data clean` output: 120 DRCD paragraphs in parts of 40 rows."""
    from triglot.data_pipeline.clean import run_clean_stage

    tmp = tmp_path_factory.mktemp("clean_run")
    lines = (shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp / "a.jsonl").write_text("\n".join(lines[:120]) + "\n", encoding="utf-8")
    source = {"name": "drcd", "paths": [str(tmp / "a.jsonl")], "format": "jsonl", "language": "zh-Hant"}
    run_clean_stage(compose({"run": {"dir": str(tmp / "run")}, "data": {"sources": [source], "rows_per_part": 40}}))
    out = tmp / "run/data/clean"
    assert len(list(out.glob("part-*.parquet"))) == 3
    return out


def _damage(folder: Path, how: str) -> None:
    if how == "no manifest":  # what a merge that died leaves: the manifest is written last
        (folder / "manifest.json").unlink()
    elif how == "unreadable manifest":
        (folder / "manifest.json").write_text('{"stage": "clean", "outp', encoding="utf-8")
    elif how == "missing part":
        (folder / "part-00001.parquet").unlink()
    elif how == "part of another size":  # whole parquet, but not what the merge recorded
        part = folder / "part-00002.parquet"
        table = pq.read_table(part)
        pq.write_table(table.slice(0, table.num_rows - 1), part)


@pytest.mark.parametrize("how", ["no manifest", "unreadable manifest", "missing part", "part of another size"])
def test_a_clean_folder_that_is_not_whole_is_refused(clean_run, tmp_path, how):
    folder = tmp_path / "clean"
    shutil.copytree(clean_run, folder)
    assert len(clean_files(folder)) == 3
    _damage(folder, how)
    with pytest.raises(InputError, match=r"rerun `triglot data clean`") as err:
        clean_files(folder)
    assert str(folder) in str(err.value)


def test_a_parquet_folder_made_by_hand_is_read_without_a_manifest(clean_run, tmp_path):
    # No manifest and nothing `data clean` leaves (no _work, no reports): parquet a user wrote.
    folder = tmp_path / "own"
    folder.mkdir()
    for part in sorted(clean_run.glob("part-*.parquet")):
        shutil.copyfile(part, folder / part.name)
    assert [p.name for p in clean_files(folder)] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    (folder / "report.json").write_text("{}", encoding="utf-8")  # but a clean stage's folder needs its manifest
    with pytest.raises(InputError, match="has no readable manifest.json"):
        clean_files(folder)


def _bad_folder(tmp_path: Path, clean_run: Path, how: str) -> tuple[Path, Path]:
    """A hand-made folder of the real clean rows, part-00001 broken `how`."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for part in sorted(clean_run.glob("part-*.parquet")):
        shutil.copyfile(part, folder / part.name)
    bad = folder / "part-00001.parquet"
    table = pq.read_table(bad, columns=COLUMNS)
    if how == "no language column":
        pq.write_table(table.drop_columns(["language"]), bad)
    elif how == "null text":
        texts = table.column("text").to_pylist()
        texts[7] = None
        pq.write_table(table.set_column(1, "text", pa.array(texts, pa.string())), bad)
    elif how == "truncated part":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return folder, bad


@pytest.mark.parametrize(("command", "how", "says"), [
    ("data pack", "no language column", "lacks column(s) language"),
    ("data pack", "null text", "null text in row 7"),
    ("data pack", "truncated part", "is not readable parquet"),
    ("tokenizer train", "null text", "null text in row 7"),
    ("tokenizer train", "truncated part", "is not readable parquet"),
])
def test_a_bad_part_ends_the_stage_with_one_line(clean_run, tmp_path, command, how, says):
    folder, bad = _bad_folder(tmp_path, clean_run, how)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"run": {"name": "bad", "dir": str(tmp_path / "run")},
                                      "tokenizer": {"input_dir": str(folder)}, "pack": {"input_dir": str(folder)}}),
                      encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "triglot", *command.split(), str(config)], capture_output=True,
                          text=True, timeout=600)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and str(bad) in lines[0] and says in lines[0], proc.stderr[-2000:]
