"""DeepSpeed's just-in-time built ops (the CPU shared-memory collective): where they build, and stale locks.

They build inside the virtual environment, not in a user-wide cache that several installs share, and a
lock left by a build that was killed halfway is cleared instead of making every later run wait in silence.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

SHM_OP = "deepspeed_shm_comm"
# Between taking the lock and starting its compiler a builder needs well under this.
STARTUP_S = 30


def extensions_dir() -> Path:
    """$TORCH_EXTENSIONS_DIR, set to <venv>/torch_extensions/<host> unless the user chose a folder.

    One folder per host, so that a build's lock is only ever held by a process this host can see.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions" / socket.gethostname()))
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def _busy_folders() -> set[Path]:
    """Working folders of this host's processes (torch runs its compiler inside the build folder)."""
    import psutil

    folders = set()
    for proc in psutil.process_iter():
        try:
            folders.add(Path(proc.cwd()))
        except (psutil.Error, OSError):
            continue
    return folders


def clear_stale_locks(root: Path, min_age_s: float = STARTUP_S) -> list[Path]:
    """Remove build locks that no process is building under (torch would wait for them forever)."""
    locks = [lock for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")] if _age(lock) > min_age_s]
    if not locks:
        return []
    busy = _busy_folders()
    removed = []
    for lock in locks:
        if lock.parent in busy:
            continue  # a build is running
        log.warning("removing a stale build lock %s (left by a build that was interrupted)", lock)
        lock.unlink(missing_ok=True)
        removed.append(lock)
    return removed


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def prepare_op_builds() -> Path:
    """Called before DeepSpeed starts on a CPU host: pick the build folder, clear stale locks, and say when
    the one-time build is about to happen (otherwise the first run is silent for a minute)."""
    root = extensions_dir()
    clear_stale_locks(root)
    if not list(root.glob(f"{SHM_OP}/{SHM_OP}*.so")) and int(os.environ.get("RANK", "0")) == 0:
        log.info("building DeepSpeed's shared-memory op in %s (once per environment, about a minute; needs a "
                 "C++ compiler)", root / SHM_OP)
    return root
