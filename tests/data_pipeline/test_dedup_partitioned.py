"""Partitioned global dedup: K key buckets keep exactly the single-process merge's documents on real corpora."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from triglot.data_pipeline.clean import data_options, run_clean_stage
from triglot.data_pipeline.dedup import duplicate_masks
from triglot.data_pipeline.dedup_partitions import (
    DropLists,
    dedup_plan,
    missing_partitions,
    run_partition,
    stage_dedup_plan,
)
from triglot.data_pipeline.merge import load_keys

from tests.data_pipeline.clean_helpers import read_output, write_review_slice
from triglot.cli import main
from triglot.config import load_config


def _inputs(shared_data: Path, folder: Path) -> list[dict]:
    """Shopping reviews that repeat a dozen reviews (CSV, split by record stride) and Cantonese Wikipedia's
    first lines, many of them near-identical redirect stubs (JSONL, split by byte range)."""
    reviews = write_review_slice(shared_data, folder / "reviews.csv", 48900, 51500)
    wiki = next(iter(sorted((shared_data / "corpora/yue/yue_wikipedia").glob("*.jsonl"))))
    yue = folder / "yue.jsonl"
    yue.write_text("".join(wiki.read_text(encoding="utf-8").splitlines(keepends=True)[:1200]), encoding="utf-8")
    return [{"name": "reviews", "paths": [str(reviews)], "format": "csv", "text_field": "review"},
            {"name": "yue", "paths": [str(yue)], "format": "jsonl", "language": "yue"}]


def single_process_masks(unit_files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(exact, near) duplicate masks over all units' rows as the single-process merge computes them."""
    exact, bands, order, _ = load_keys(unit_files, bands=14)
    run_order = np.argsort(order, kind="stable")
    exact_dup, near_dup = np.zeros(len(order), bool), np.zeros(len(order), bool)
    exact_dup[run_order], near_dup[run_order] = duplicate_masks(exact[run_order], bands[run_order], True, True)
    return exact_dup, near_dup


def partitioned_masks(plan) -> tuple[np.ndarray, np.ndarray]:
    rows = [pq.ParquetFile(path).metadata.num_rows for path in plan.unit_files]
    return tuple(np.concatenate([DropLists(plan, phase).unit_mask(u, n) for u, n in enumerate(rows)])
                 for phase in ("exact", "near"))


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> SimpleNamespace:
    """A sharded clean's work units (many small ones), before any merge, and the single-process answer."""
    folder = tmp_path_factory.mktemp("partitioned")
    experiment = folder / "exp.yaml"
    experiment.write_text(yaml.safe_dump({
        "defaults": {"hardware": "cpu"}, "run": {"name": "dedup", "dir": str(folder / "run")},
        "tracking": {"mode": "disabled"},
        "data": {"workers": 1, "unit_bytes": 60_000, "sources": _inputs(shared_data, folder),
                 "filters": {"zh-Hans": {"min_chars": 4}, "yue": {"min_chars": 4}}}}), encoding="utf-8")
    cfg = load_config(str(experiment), [])
    run_clean_stage(cfg, shard=(0, 1))
    plan = stage_dedup_plan(cfg)
    exact, near = single_process_masks(list(plan.unit_files))
    ids = np.concatenate([pq.read_table(p, columns=["id"]).column("id").to_numpy(zero_copy_only=False)
                          for p in plan.unit_files])
    return SimpleNamespace(experiment=experiment, cfg=cfg, plan=plan, exact=exact, near=near, ids=ids,
                           run_dir=folder / "run")


def test_every_k_drops_exactly_what_one_process_drops(cleaned) -> None:
    assert len(cleaned.plan.unit_files) > 20
    assert cleaned.exact.sum() >= 3 and cleaned.near.sum() >= 10
    dedup = data_options(cleaned.cfg).dedup
    for k in (1, 2, 3):
        plan = dedup_plan(list(cleaned.plan.unit_files), replace(dedup, partitions=k))
        markers = [run_partition(plan, phase, p) for phase in plan.phases for p in range(k)]
        exact, near = partitioned_masks(plan)
        assert np.array_equal(exact, cleaned.exact), f"K={k}: exact duplicates differ"
        assert np.array_equal(near, cleaned.near), f"K={k}: near duplicates differ"
        # Each exact key is held by one partition only, and for K > 1 no partition holds them all.
        held = [m["keys"] for m in markers if m["phase"] == "exact"]
        assert sum(held) == len(cleaned.ids) and (k == 1 or max(held) < len(cleaned.ids))


def test_deduplicating_each_unit_alone_misses_copies(cleaned) -> None:
    """The copies cross units: a partition task that skipped the gather over all units would keep them."""
    exact, near = [], []
    for path in cleaned.plan.unit_files:
        unit_exact, unit_near = single_process_masks([path])
        exact.append(unit_exact)
        near.append(unit_near)
    assert np.concatenate(exact).sum() < cleaned.exact.sum()
    assert np.concatenate(near).sum() < cleaned.near.sum()


def test_merge_in_three_processes_writes_the_single_process_shards(cleaned, capsys) -> None:
    plan = dedup_plan(list(cleaned.plan.unit_files), replace(data_options(cleaned.cfg).dedup, partitions=3))
    shutil.rmtree(plan.folder, ignore_errors=True)  # no partition done yet: the merge runs all six tasks
    assert main(["data", "merge", str(cleaned.experiment), "--partitions", "3"]) == 0
    assert len(list(plan.folder.glob("*.json"))) == 6
    rows, report = read_output(cleaned.run_dir)
    assert sorted(r["id"] for r in rows) == sorted(cleaned.ids[~(cleaned.exact | cleaned.near)])
    assert report["removed_by_reason"]["dedup_exact"]["docs"] == cleaned.exact.sum()
    assert report["removed_by_reason"]["dedup_near"]["docs"] == cleaned.near.sum()
    # A partition task run again finds its marker and skips; a redone unit makes every partition stale.
    assert main(["data", "merge", str(cleaned.experiment), "--partitions", "3", "--phase", "near",
                 "--partition", "2"]) == 0
    assert "skipped=True" in capsys.readouterr().out
    marker = json.loads(plan.marker_path("near", 2).read_text())
    assert marker["of"] == 3 and marker["dropped"] > 0
    plan.unit_files[5].touch()
    assert len(missing_partitions(plan)) == 6
    assert run_partition(plan, "exact", 0)["skipped"] is False


def test_partition_task_user_errors(cleaned, capsys) -> None:
    base = ["data", "merge", str(cleaned.experiment)]
    assert main([*base, "--partitions", "3", "--phase", "exact", "--partition", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--partition 3" in err and "data.dedup.partitions" in err and "Traceback" not in err
    assert main([*base, "--partitions", "4", "--phase", "near", "--partition", "1"]) == 2
    assert "--phase exact --partition 0" in capsys.readouterr().err
    assert main([*base, "--partitions", "4", "--write-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exact 0" in err and "--write-only" in err
