"""`triglot data clean` / `triglot data merge` from the command line: workers, shards, reruns, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml


def _triglot(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _data_config(tmp_path: Path, shared_data: Path) -> Path:
    lines = (shared_data / "corpora/zh_hant/zh_hant_drcd/drcd_contexts.jsonl").read_text(encoding="utf-8").splitlines()
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.jsonl").write_text("\n".join(lines[:150]) + "\n", encoding="utf-8")
    # b.jsonl repeats a.jsonl's first 30 lines: duplicates that land in another shard.
    (inputs / "b.jsonl").write_text("\n".join(lines[150:250] + lines[:30]) + "\n", encoding="utf-8")
    config = tmp_path / "drcd_small.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "drcd", "paths": [str(inputs / "*.jsonl")],
                                                   "format": "jsonl", "language": "zh-Hant"}],
                                      "unit_bytes": 40_000}), encoding="utf-8")
    return config


def _parts(out: Path) -> list[dict]:
    return [row for part in sorted(out.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]


def test_clean_with_workers_then_shards_and_merge(tmp_path, shared_data, repo_root):
    config = _data_config(tmp_path, shared_data)
    whole = tmp_path / "whole"
    done = _triglot("data", "clean", str(config), f"data.output_dir={whole}", "--workers", "2", cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert "kept=250" in done.stdout
    report = json.loads((whole / "report.json").read_text(encoding="utf-8"))
    assert report["removed_by_reason"]["dedup_exact"]["docs"] == 30
    again = _triglot("data", "clean", str(config), f"data.output_dir={whole}", cwd=repo_root)
    assert again.returncode == 0 and "up to date" in again.stderr

    sharded = tmp_path / "sharded"
    for index in range(3):
        shard = _triglot("data", "clean", str(config), f"data.output_dir={sharded}", "--shard", f"{index}/3",
                         cwd=repo_root)
        assert shard.returncode == 0, shard.stderr
    assert not list(sharded.glob("part-*.parquet"))
    merged = _triglot("data", "merge", str(config), f"data.output_dir={sharded}", cwd=repo_root)
    assert merged.returncode == 0, merged.stderr
    assert sorted(r["id"] for r in _parts(sharded)) == sorted(r["id"] for r in _parts(whole))


def test_user_errors_exit_2_with_a_message(tmp_path, repo_root):
    config = tmp_path / "missing.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "nothing", "paths": [str(tmp_path / "none/*.jsonl")]}]}))
    result = _triglot("data", "clean", str(config), cwd=repo_root)
    assert result.returncode == 2 and "no file matches" in result.stderr
    config.write_text(yaml.safe_dump({"sources": [{"name": "xml", "paths": ["configs/data/*.yaml"], "format": "xml"}]}))
    result = _triglot("data", "clean", str(config), cwd=repo_root)
    assert result.returncode == 2 and "data.sources[0] (xml).format" in result.stderr
    result = _triglot("data", "merge", "configs/data/zh_hant_drcd.yaml", f"data.output_dir={tmp_path / 'x'}", cwd=repo_root)
    assert result.returncode == 2 and "not done" in result.stderr


def test_every_shipped_data_config_loads(repo_root):
    from triglot.data_pipeline.clean import data_options, resolve_sources, validate
    from triglot.data_pipeline.commands import load_clean_config

    class Args:
        overrides: list[str] = []

    configs = sorted((repo_root / "configs/data").glob("*.yaml"))
    assert len(configs) >= 15
    for path in configs:
        args = Args()
        args.config = str(path)
        cfg = load_clean_config(args)
        data = data_options(cfg)
        validate(data)
        assert all(files for _, files in resolve_sources(data)), path


def test_finished_units_are_not_redone(tmp_path, shared_data):
    from triglot.data_pipeline.clean import run_clean_stage

    from tests.data_pipeline.clean_helpers import clean_config

    path = shared_data / "corpora/zh_hans/zh_hans_cmrc2018/cmrc2018_contexts.jsonl"
    cfg = clean_config(tmp_path / "run", [{"name": "cmrc", "paths": [str(path)], "format": "jsonl"}],
                       max_docs_per_source=200, unit_bytes=400_000)
    first = run_clean_stage(cfg, shard=(0, 2))
    units = sorted((tmp_path / "run/data/clean/_work").glob("*/units/*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in units}
    assert first["units"] == len(units) >= 1
    run_clean_stage(cfg, shard=(0, 2))
    assert {p: p.stat().st_mtime_ns for p in units} == stamps
    run_clean_stage(cfg, shard=(1, 2))
    result = run_clean_stage(cfg)  # all units done: only the merge runs
    assert {p: p.stat().st_mtime_ns for p in units} == stamps
    assert result["counts"]["docs_in"] == 200


def test_config_show_accepts_a_bare_data_config(repo_root):
    result = _triglot("config", "show", "configs/data/yue_commonvoice.yaml", cwd=repo_root)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["run"]["name"] == "data-yue_commonvoice"
    assert shown["data"]["sources"][0]["kind"] == "sentences"
    assert "# config hash:" in result.stdout
