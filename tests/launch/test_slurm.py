"""End to end on the real local Slurm cluster: a training job, preemption with requeue and resume, a sweep array."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

QUICKSTART = "configs/experiments/quickstart.yaml"


def triglot(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "triglot", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def events(run_dir: Path, key: str) -> list[list[str]]:
    path = run_dir / "jobs" / f"{key}.events"
    return [line.split("\t") for line in path.read_text().splitlines()]


def last_step(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if '"loss"' in line]
    return max(steps, default=0)


def test_train_job_with_two_tasks(slurm_cluster: str, packed_dir: Path, tmp_path: Path, helpers) -> None:
    run_dir = tmp_path / "run"
    out = triglot("launch", "slurm", "train", QUICKSTART, *helpers.tiny_overrides(run_dir, packed_dir, steps=4),
                  "run.nproc_per_node=2")
    job_id = out.strip().splitlines()[-1]
    helpers.wait_for_jobs([job_id])
    assert (run_dir / "checkpoints" / "step-00000004" / "COMPLETE").is_file()
    assert (run_dir / "checkpoints" / "manifest.json").is_file()
    assert last_step(run_dir) == 4
    log = (run_dir / "logs" / f"quickstart-train-{job_id}.out").read_text()
    assert f"triglot job {job_id} attempt 0" in log
    ranks = {p.name for p in (run_dir / "checkpoints").rglob("mp_rank_*")} | {
        p.name for p in (run_dir / "checkpoints").rglob("*optim_states.pt")}
    assert ranks, "no DeepSpeed state in the checkpoint"
    assert [row[2] for row in events(run_dir, job_id)][-1] == "exit"
    listing = triglot("jobs", str(run_dir))
    assert job_id in listing and "COMPLETED" in listing


def test_signalled_job_requeues_and_resumes(slurm_cluster: str, packed_dir: Path, tmp_path: Path, helpers) -> None:
    run_dir = tmp_path / "run"
    # The tiny model trains tens of steps a second: enough steps, one sequence per micro-batch, that the stop
    # signal lands mid-run rather than after the last step (then there would be nothing to resume).
    steps, batch = 300, 8
    out = triglot("launch", "slurm", "train", QUICKSTART,
                  *helpers.tiny_overrides(run_dir, packed_dir, steps=steps, every=100), "train.log_samples=true",
                  "train.micro_batch_size=1", "run.nproc_per_node=2")
    job_id = out.strip().splitlines()[-1]
    deadline = time.monotonic() + 300
    while last_step(run_dir) < 3:
        assert time.monotonic() < deadline, "training did not reach step 3"
        time.sleep(0.2)
    # What Slurm does ahead of the time limit (--signal=B:USR1@N): signal the batch shell.
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
    helpers.wait_for_jobs([job_id], timeout=600)

    kinds = [row[2] for row in events(run_dir, job_id)]
    assert "signal" in kinds and "requeue" in kinds, kinds
    assert kinds[-1] == "exit" and events(run_dir, job_id)[-1][3] == "rc=0"
    assert {row[1] for row in events(run_dir, job_id)} == {"0", "1"}  # two attempts of the same job
    assert (run_dir / "checkpoints" / f"step-{steps:08d}" / "COMPLETE").is_file()
    log = (run_dir / "logs" / f"quickstart-train-{job_id}.out").read_text()
    assert "attempt 1" in log and "resumed from" in log, log[-3000:]
    # Every global sample index of the run was consumed exactly once across the interruption.
    seen: list[int] = []
    step_counts: dict[int, int] = {}
    for path in sorted((run_dir / "checkpoints" / "samples").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            seen.extend(record["indices"])
            step_counts[record["step"]] = step_counts.get(record["step"], 0) + 1
    assert sorted(step_counts) == list(range(1, steps + 1)) and set(step_counts.values()) == {2}
    assert sorted(seen) == list(range(steps * batch))
    # The resumed job continued the same W&B run.
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) >= 1
    run_ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert run_ids == {(run_dir / "wandb_run_id").read_text().strip()}
    assert "REQUEUED" not in triglot("jobs", str(run_dir))


def test_grid_sweep_is_one_array(slurm_cluster: str, packed_dir: Path, tmp_path: Path, helpers) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = [o for o in helpers.tiny_overrides(Path("unused"), packed_dir, steps=4) if not o.startswith("run.dir")]
    path = helpers.write_yaml(tmp_path / "grid.yaml", {
        "name": "grid", "base": QUICKSTART, "dir": str(sweep_dir), "method": "grid",
        "parameters": {"train.lr": [0.001, 0.003], "model.hidden_size": [32, 64]},
        "overrides": [*overrides, "run.nproc_per_node=1"], "stages": ["train"]})
    summary = json.loads(triglot("sweep", str(path)))
    array_id, results_id = summary["array_job"], summary["results_job"]
    assert summary["tasks"] == [0, 1, 2, 3]
    helpers.wait_for_jobs([array_id, results_id], timeout=900)

    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    run_dirs = [Path(r["run_dir"]) for r in manifest["runs"]]
    assert len(run_dirs) == 4
    for index, run_dir in enumerate(run_dirs):
        assert (run_dir / "checkpoints" / "step-00000004" / "COMPLETE").is_file()
        assert (run_dir / "sweep-task.done").is_file()
        assert events(sweep_dir, f"{array_id}_{index}")[-1][2:] == ["exit", "rc=0"]  # one array, four tasks
        assert list((run_dir / "logs").glob(f"*-{array_id}_{index}.out"))
    # One W&B group for the sweep: every run's config names it, and each run logged an offline W&B run.
    assert {yaml.safe_load((d / "config.yaml").read_text())["tracking"]["group"] for d in run_dirs} == {"grid"}
    assert all(list((d / "wandb").glob("offline-run-*")) for d in run_dirs)
    results = json.loads((sweep_dir / "results.json").read_text())
    assert len(results["rows"]) == 4 and all(r["status"] == "finished" for r in results["rows"])
    assert all(isinstance(r["final_loss"], float) for r in results["rows"])
    table = (sweep_dir / "results.md").read_text()
    assert "final_loss" in table and "train.lr" in table and len(table.splitlines()) == 6
    # Submitting again skips the finished configs.
    again = json.loads(triglot("sweep", str(path)))
    assert again["submitted"] is False and again["finished_before"] == 4


def test_data_stage_as_array_then_merge(slurm_cluster: str, shared_data: Path, tmp_path: Path, helpers) -> None:
    source = next(iter(sorted((shared_data / "corpora" / "yue" / "yue_wikipedia").glob("*.jsonl"))))
    sample = tmp_path / "yue.jsonl"
    sample.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:80]), encoding="utf-8")
    run_dir = tmp_path / "run"
    experiment = helpers.write_yaml(tmp_path / "exp.yaml", {
        "defaults": {"hardware": "cpu"}, "run": {"name": "data", "dir": str(run_dir)},
        "tracking": {"mode": "disabled"}, "launch": {"data_shards": 2},
        "data": {"workers": 1, "sources": [{"name": "yue", "paths": [str(sample)], "format": "jsonl",
                                            "language": "yue"}]}})
    job_ids = triglot("launch", "slurm", "clean", str(experiment)).split()
    assert len(job_ids) == 2
    helpers.wait_for_jobs(job_ids)
    records = [json.loads(line) for line in (run_dir / "jobs" / "jobs.jsonl").read_text().splitlines()]
    assert records[0]["array"] == "0-1" and records[1]["dependency"] == f"afterok:{job_ids[0]}"
    shard_exits = [float(events(run_dir, f"{job_ids[0]}_{i}")[-1][0]) for i in (0, 1)]
    assert [events(run_dir, f"{job_ids[0]}_{i}")[-1][2:] for i in (0, 1)] == [["exit", "rc=0"]] * 2
    merge = events(run_dir, job_ids[1])
    assert merge[-1][2:] == ["exit", "rc=0"] and float(merge[0][0]) >= max(shard_exits)
    clean_dir = run_dir / "data" / "clean"
    assert (clean_dir / "manifest.json").is_file() and list(clean_dir.glob("part-*.parquet"))


def test_local_cluster_start_is_idempotent(slurm_cluster: str) -> None:
    script = Path(__file__).resolve().parents[2] / "launch" / "slurm_local.sh"
    for _ in range(2):
        subprocess.run([str(script), "start"], check=True, capture_output=True, timeout=120)
    status = subprocess.run([str(script), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "idle" in status.stdout and status.stdout.count("running") == 4
