"""Where each stage reads and writes inside a run folder (the artifact layout every stage shares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Stage name -> folder below run.dir.
STAGE_DIRS = {
    "clean": "data/clean",
    "tokenizer": "tokenizer",
    "pack": "data/packed",
    "train": "checkpoints",
    "eval": "eval",
}


def run_dir(cfg: Any) -> Path:
    return Path(cfg.run.dir)


def stage_dir(cfg: Any, stage: str, override: str = "") -> Path:
    """Output folder of `stage`; `override` (a config value such as pack.input_dir) wins when set."""
    if override:
        return Path(override)
    return run_dir(cfg) / STAGE_DIRS[stage]
