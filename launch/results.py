"""The results table across a sweep: each run's varied values, status, final training loss and eval scores.

Written as results.md, results.csv and results.json in the sweep folder and logged to the sweep's W&B group.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from triglot.launch.sweep_files import DONE_MARKER

from triglot.errors import InputError

log = logging.getLogger(__name__)


def final_loss(run_dir: Path) -> float | None:
    """The last training loss any metrics.jsonl in the run folder recorded."""
    best: tuple[float, float] | None = None
    for path in run_dir.rglob("metrics.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            for key in ("loss", "train/loss", "train_loss"):
                if isinstance(record.get(key), (int, float)):
                    stamp = (float(record.get("step", 0)), float(record.get("time", 0)))
                    if best is None or stamp >= best[0]:
                        best = (stamp, float(record[key]))
    return None if best is None else best[1]


def _numbers(prefix: str, value: Any, out: dict[str, float], depth: int = 0) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict) and depth < 3:
        for key, inner in value.items():
            if key in ("samples", "records", "config", "manifest"):
                continue
            _numbers(f"{prefix}/{key}" if prefix else str(key), inner, out, depth + 1)


def eval_scores(run_dir: Path) -> dict[str, float]:
    """Numeric scores from the newest eval results.json in the run folder (suite/metric -> value)."""
    files = sorted((run_dir / "eval").rglob("results.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    scores: dict[str, float] = {}
    data = json.loads(files[-1].read_text(encoding="utf-8"))
    _numbers("", data.get("scores", data.get("results", data)), scores)
    return scores


def collect_results(root: Path) -> dict:
    """Build the table from sweep.json and the run folders; returns {"rows": ..., "columns": ...}."""
    manifest_path = root / "sweep.json"
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path} not found; expand the sweep first with triglot sweep FILE")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    rows, score_keys = [], set()
    for run in manifest["runs"]:
        run_dir = Path(run["run_dir"])
        marker = run_dir / DONE_MARKER
        done = marker.is_file() and marker.read_text(encoding="utf-8").strip() == run["hash"]
        scores = eval_scores(run_dir)
        score_keys.update(scores)
        rows.append({"index": run["index"], "hash": run["hash"], **{k: run["values"].get(k) for k in manifest["varied"]},
                     "status": "finished" if done else "not finished", "final_loss": final_loss(run_dir),
                     **scores, "run_dir": run["run_dir"]})
    columns = ["index", "hash", *manifest["varied"], "status", "final_loss", *sorted(score_keys), "run_dir"]
    write_tables(root, columns, rows)
    log_to_wandb(manifest, columns, rows)
    return {"columns": columns, "rows": rows, "table": str(root / "results.md")}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_tables(root: Path, columns: list[str], rows: list[dict]) -> None:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    (root / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    (root / "results.csv").write_text(buffer.getvalue(), encoding="utf-8")
    (root / "results.json").write_text(json.dumps({"columns": columns, "rows": rows}, indent=2), encoding="utf-8")


def log_to_wandb(manifest: dict, columns: list[str], rows: list[dict]) -> None:
    """One summary run in the sweep's W&B group carrying the results table."""
    from triglot.config import load_config
    from triglot.tracking import start_tracker

    cfg = load_config(manifest["runs"][0]["config"])
    root = Path(manifest["runs"][0]["run_dir"]).parent.parent
    cfg.run.name = f"{manifest['name']}-results"
    tracker = start_tracker(cfg, root, "sweep-results", group=manifest["group"])
    tracker.table("sweep_results", columns, [[_cell(row.get(c)) for c in columns] for row in rows])
    tracker.summary({"runs": len(rows), "finished": sum(r["status"] == "finished" for r in rows)})
    tracker.finish()
