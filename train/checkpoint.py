"""Atomic, verified training checkpoints: written aside, renamed into place, COMPLETE marker last.

`<ckpt root>/step-XXXXXXXX/` holds DeepSpeed state under `state/`, per-rank RNG states, the resolved
config, the lineage (data and tokenizer manifests) and optionally an `hf/` export.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
PREFIX = "step-"
TMP_PREFIX = ".tmp-step-"
STATE_TAG = "state"
UNIVERSAL_TAG = "universal"  # the same state converted for loading at another world size


def step_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def rng_state() -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _verify(folder: Path) -> str:
    """Empty when the checkpoint looks whole, else why not."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return "no COMPLETE marker (partial write)"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return "COMPLETE marker unreadable"
    for rel, size in info.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return f"{rel} missing or truncated"
    return ""


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every verified checkpoint under `root`, oldest first; others are warned about."""
    found = []
    for folder in sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []:
        try:
            step = int(folder.name[len(PREFIX):])
        except ValueError:
            continue
        problem = _verify(folder)
        if problem:
            log.warning("skipping checkpoint %s: %s", folder, problem)
            continue
        found.append((step, folder))
    return found


def latest_checkpoint(root: Path) -> tuple[int, Path] | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(engine: Any, root: Path, step: int, rank: int, client: dict, extra_files: dict[str, Any],
                    barrier: Any) -> Path:
    """Collective: every rank writes its DeepSpeed shards and RNG state, then rank 0 commits."""
    import torch

    tmp = root / f"{TMP_PREFIX}{step:08d}"
    final = root / step_name(step)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(tmp), tag=STATE_TAG, client_state=client, save_latest=False)
    torch.save(rng_state(), tmp / f"rng-rank{rank:05d}.pt")
    barrier()
    if rank == 0:
        for name, value in extra_files.items():
            (tmp / name).write_text(value if isinstance(value, str) else json.dumps(value, indent=2, default=str),
                                    encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final


def commit(folder: Path, step: int) -> None:
    """Rank 0, after everything else in `folder` is written: the marker lists every file and its size."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    tmp = folder / (COMPLETE + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / COMPLETE)


def prune(root: Path, keep_last: int) -> None:
    """Rank 0: drop all but the newest `keep_last` complete checkpoints and stale temporary folders."""
    for folder in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)
    found = complete_checkpoints(root)
    for _, folder in found[: max(0, len(found) - max(1, keep_last))]:
        shutil.rmtree(folder, ignore_errors=True)


def to_universal(folder: Path, rank: int, engine: Any) -> None:
    """Collective: convert `folder`'s ZeRO shards to DeepSpeed's universal form (any world size)."""
    import argparse

    import torch.distributed as dist
    from deepspeed.checkpoint import ds_to_universal

    target = folder / UNIVERSAL_TAG
    if rank == 0 and not (target / COMPLETE).is_file():
        log.info("converting %s to a universal checkpoint for a new world size", folder)
        tmp = folder / (UNIVERSAL_TAG + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        args = argparse.Namespace(input_folder=str(folder / STATE_TAG), output_folder=str(tmp), num_extract_workers=1,
                                  num_merge_workers=1, keep_temp_folder=False, strict=True, inject_missing_state=False)
        ds_to_universal.main(args)
        (tmp / COMPLETE).write_text("", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    dist.barrier()
    engine._config.load_universal_checkpoint = True  # read by load_checkpoint; no public setter


def load_checkpoint(engine: Any, folder: Path, rank: int, same_world: bool) -> dict:
    """Restore engine state (and this rank's RNG when the world size is unchanged); returns client state."""
    import torch

    tag = STATE_TAG if same_world else UNIVERSAL_TAG
    _, client = engine.load_checkpoint(str(folder), tag=tag, load_optimizer_states=True,
                                       load_lr_scheduler_states=True)
    rng_file = folder / f"rng-rank{rank:05d}.pt"
    if same_world and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return client or {}
