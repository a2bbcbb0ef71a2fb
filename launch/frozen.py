"""Frozen configs: the resolved config a launch hands its ranks or jobs, in `<run.dir>/configs/<hash>.yaml`.

The name is the config's hash, so a file is written once and never rewritten: a queued job reads exactly the
config it was submitted with, whatever later commands (dry runs included) do in the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from triglot.config import config_hash, to_yaml

CONFIGS_DIR = "configs"


def frozen_config_path(cfg: Any) -> Path:
    """Where the launch of `cfg` keeps its config (absolute, as job scripts and other hosts read it)."""
    return (Path(cfg.run.dir) / CONFIGS_DIR / f"{config_hash(cfg)}.yaml").resolve()


def freeze_config(cfg: Any) -> Path:
    """Write `cfg` to its frozen path unless it is there already (same hash, same content); returns the path."""
    path = frozen_config_path(cfg)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: launchers of one run on several nodes may write at the same moment.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(to_yaml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
