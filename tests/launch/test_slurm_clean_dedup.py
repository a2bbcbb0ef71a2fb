"""`launch slurm clean` with a partitioned dedup: shard array, exact and near dedup arrays of K tasks, then the
write, each `afterok` on the one before; rendered (dry run) and run for real on the local Slurm cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from triglot.data_pipeline.dedup import duplicate_masks
from triglot.data_pipeline.dedup_partitions import stage_dedup_plan
from triglot.data_pipeline.merge import load_keys
from triglot.launch.slurm import job_config, launch_stage

from tests.data_pipeline.clean_helpers import write_review_slice
from triglot.config import load_config


def _experiment(tmp_path: Path, shared_data: Path, helpers, partitions: int) -> Path:
    reviews = write_review_slice(shared_data, tmp_path / "reviews.csv", 48900, 49700)
    return helpers.write_yaml(tmp_path / "exp.yaml", {
        "defaults": {"hardware": "cpu"}, "run": {"name": "dd", "dir": str(tmp_path / "run")},
        "tracking": {"mode": "disabled"}, "launch": {"data_shards": 2},
        "data": {"workers": 1, "unit_bytes": 40_000, "dedup": {"partitions": partitions},
                 "filters": {"zh-Hans": {"min_chars": 4}},
                 "sources": [{"name": "reviews", "paths": [str(reviews)], "format": "csv", "text_field": "review"}]}})


def test_dry_run_renders_map_dedup_arrays_and_write(tmp_path: Path, shared_data: Path, helpers) -> None:
    experiment = _experiment(tmp_path, shared_data, helpers, partitions=3)
    cfg = job_config(str(experiment), [])
    records = launch_stage(cfg, "clean", "launch slurm clean", 1, 0, dry_run=True)
    assert [r["name"] for r in records] == ["dd-clean", "dd-dedup-exact", "dd-dedup-near", "dd-merge"]
    assert [r["array"] for r in records] == ["0-1", "0-2", "0-2", ""]
    assert [r["dependency"] for r in records] == ["", "afterok:<job id of dd-clean>",
                                                  "afterok:<job id of dd-dedup-exact>",
                                                  "afterok:<job id of dd-dedup-near>"]
    clean, exact, near, merge = (r["text"] for r in records)
    assert "#SBATCH --array=0-1" in clean and "--shard" in clean
    for text, phase in ((exact, "exact"), (near, "near")):
        assert "#SBATCH --array=0-2" in text
        assert f'data merge "$CONFIG" --phase {phase} --partition "$SLURM_ARRAY_TASK_ID"' in text
    assert "#SBATCH --array" not in merge and 'data merge "$CONFIG" --write-only' in merge
    # Without partitions (K = 1) the merge job dedups and writes alone, as before.
    single = launch_stage(job_config(str(experiment), ["data.dedup.partitions=1"]), "clean", "x", 1, 0, dry_run=True)
    assert [r["name"] for r in single] == ["dd-clean", "dd-merge"] and "--write-only" not in single[1]["text"]


def _events(run_dir: Path, key: str) -> list[list[str]]:
    return [line.split("\t") for line in (run_dir / "jobs" / f"{key}.events").read_text().splitlines()]


@pytest.mark.slurm
@pytest.mark.slow
def test_partitioned_clean_runs_on_slurm(slurm_cluster: str, tmp_path: Path, shared_data: Path, helpers) -> None:
    experiment = _experiment(tmp_path, shared_data, helpers, partitions=2)
    proc = subprocess.run([sys.executable, "-m", "triglot", "launch", "slurm", "clean", str(experiment)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_ids = proc.stdout.split()
    assert len(job_ids) == 4
    helpers.wait_for_jobs(job_ids, timeout=600)
    run_dir = tmp_path / "run"
    submitted = [json.loads(line) for line in (run_dir / "jobs" / "jobs.jsonl").read_text().splitlines()]
    assert [r["dependency"] for r in submitted[1:]] == [f"afterok:{j}" for j in job_ids[:-1]]
    ends = []
    for job_id in job_ids[1:3]:
        for task in (0, 1):
            events = _events(run_dir, f"{job_id}_{task}")
            assert events[-1][2:] == ["exit", "rc=0"]
            ends.append(float(events[-1][0]))
    write = _events(run_dir, job_ids[3])
    assert write[-1][2:] == ["exit", "rc=0"] and float(write[0][0]) >= max(ends)
    # The shards hold exactly what the single-process dedup keeps.
    plan = stage_dedup_plan(load_config(str(experiment), []))
    assert len(list(plan.folder.glob("*.json"))) == 4
    exact, bands, order, _ = load_keys(list(plan.unit_files), 14)
    run_order = np.argsort(order, kind="stable")
    dup = np.zeros(len(order), bool)
    dup[run_order] = np.logical_or(*duplicate_masks(exact[run_order], bands[run_order], True, True))
    ids = np.concatenate([pq.read_table(p, columns=["id"]).column("id").to_numpy(zero_copy_only=False)
                          for p in plan.unit_files])
    kept = [r for part in sorted((run_dir / "data" / "clean").glob("part-*.parquet"))
            for r in pq.read_table(part, columns=["id"]).column("id").to_pylist()]
    assert dup.sum() > 0 and sorted(kept) == sorted(ids[~dup])
