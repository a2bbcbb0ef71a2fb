"""`triglot jobs RUN_DIR`: the run's Slurm jobs with their live state (squeue) or their recorded outcome.

Finished jobs leave slurmctld's memory after a short while; their events in <run>/jobs/*.events remain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from triglot.launch.slurm import JOBS_DIR, JOBS_FILE

from triglot.errors import InputError


@dataclass
class JobState:
    key: str  # job id, or ARRAYID_TASK for array tasks
    name: str
    state: str
    attempts: int
    detail: str


def read_records(run_dir: Path) -> list[dict]:
    path = run_dir / JOBS_DIR / JOBS_FILE
    if not path.is_file():
        raise InputError(f"no Slurm jobs recorded in {run_dir} (expected {path}); submit with triglot launch slurm")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def live_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """squeue's view: job key -> (state, reason) for jobs slurmctld still knows."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    result = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
                            capture_output=True, text=True)
    states = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def read_events(path: Path) -> list[list[str]]:
    """Rows of (time, attempt, event, detail) that the job script appended."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.count("\t") >= 3]


def recorded_state(events: list[list[str]]) -> tuple[str, int, str]:
    """(state, attempts, detail) from a job's own events when squeue no longer lists it."""
    if not events:
        return "UNKNOWN", 0, "no events recorded"
    attempts = max(int(row[1]) for row in events) + 1
    _, _, event, detail = events[-1][:4]
    if event == "exit":
        return ("COMPLETED" if detail == "rc=0" else "FAILED"), attempts, detail
    if event == "signal" and detail == "TERM":
        return "CANCELLED", attempts, "terminated by Slurm (scancel, time limit or preemption)"
    if event == "requeue":
        return "REQUEUED", attempts, detail
    return "ENDED", attempts, f"last event: {event} {detail}".strip()


def job_states(run_dir: Path) -> list[JobState]:
    records = read_records(run_dir)
    live = live_states([r["job_id"] for r in records if r.get("job_id")])
    rows = []
    for record in records:
        job_id = record["job_id"]
        event_files = {p.stem: p for p in (run_dir / JOBS_DIR).glob(f"{job_id}*.events")}
        keys = sorted(set(event_files) | {k for k in live if k == job_id or k.startswith(f"{job_id}_")}) or [job_id]
        for key in keys:
            events = read_events(event_files[key]) if key in event_files else []
            state, attempts, detail = recorded_state(events)
            if key in live:
                state, reason = live[key]
                detail = reason if reason not in ("None", "") else detail
            rows.append(JobState(key, record["name"], state, attempts, detail))
    return rows


def format_states(rows: list[JobState]) -> str:
    header = ("JOB", "NAME", "STATE", "ATTEMPTS", "DETAIL")
    table = [header] + [(r.key, r.name, r.state, str(r.attempts), r.detail) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in table)
