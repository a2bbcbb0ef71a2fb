"""Run tracking: one wrapper over W&B plus a local metrics.jsonl that is always written.

The W&B run id lives in the run folder, so a resumed or requeued job continues the same W&B run.
Ranks other than 0 get a tracker that does nothing. No API key is ever written by triglot.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id"


def resolve_mode(mode: Any) -> str:
    mode = str(getattr(mode, "value", mode))
    if mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return mode


def run_group(cfg: Any) -> str:
    """The W&B group of every job of a run (training, fine-tuning, eval): tracking.group, else the run's name."""
    return str(cfg.tracking.group or cfg.run.name)


def run_id_for(run_dir: Path) -> str:
    """The run folder's W&B id, created once and reused by every later job on that folder."""
    path = run_dir / RUN_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:12]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(run_id + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # first writer wins if two jobs race
        except FileExistsError:
            pass
        tmp.unlink(missing_ok=True)
        return path.read_text(encoding="utf-8").strip()


class Tracker:
    """Logs metrics to W&B (online, offline or disabled) and to `metrics.jsonl` in `metrics_dir`."""

    def __init__(self, cfg: Any, run_dir: str | os.PathLike, job_type: str,
                 metrics_dir: str | os.PathLike | None = None, group: str | None = None, id_suffix: str = ""):
        from triglot.config import to_container

        self.run_dir = Path(run_dir)
        self.job_type = job_type
        self.mode = resolve_mode(cfg.tracking.mode)
        metrics_dir = Path(metrics_dir) if metrics_dir else self.run_dir
        metrics_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = metrics_dir / cfg.tracking.metrics_file
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        # A job that runs beside training (eval --watch) gets a W&B run of its own, "<run id>-<suffix>",
        # in the same group: two processes writing one W&B run at once would clash.
        self.run_id = run_id_for(self.run_dir) + (f"-{id_suffix}" if id_suffix else "")
        self.wandb_run = None
        if self.mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                project=cfg.tracking.project,
                entity=cfg.tracking.entity,
                group=group or run_group(cfg),
                tags=list(cfg.tracking.tags) + list(cfg.run.tags),
                name=cfg.run.name,
                id=self.run_id,
                resume="allow",
                mode=self.mode,
                dir=str(self.run_dir),
                job_type=job_type,
                config=to_container(cfg),
                settings=wandb.Settings(console="off", x_disable_stats=True, quiet=True),
            )

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        record = {"time": time.time(), "job": self.job_type, **({"step": step} if step is not None else {}), **metrics}
        self._metrics.write(json.dumps(record, ensure_ascii=False, default=float) + "\n")
        self._metrics.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            self.wandb_run.summary.update(values)

    def table(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def finish(self) -> None:
        self._metrics.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


class NullTracker:
    """What ranks other than 0 get: the same interface, doing nothing."""

    mode = "disabled"
    run_id = ""

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def table(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None: ...
    def finish(self) -> None: ...
    def __enter__(self) -> NullTracker:
        return self
    def __exit__(self, *exc: Any) -> None: ...


def start_tracker(cfg: Any, run_dir: str | os.PathLike, job_type: str, rank: int = 0,
                  metrics_dir: str | os.PathLike | None = None, group: str | None = None,
                  id_suffix: str = "") -> Tracker | NullTracker:
    if rank != 0:
        return NullTracker()
    return Tracker(cfg, run_dir, job_type, metrics_dir=metrics_dir, group=group, id_suffix=id_suffix)
