"""Where each stage reads and writes inside a run folder (the artifact layout every stage shares)."""

from __future__ import annotations

import os
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


def fsync_path(path: Path) -> None:
    """Flush a closed file (or a folder's entries) to disk, so a rename after it never names lost bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
