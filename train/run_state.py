"""Whether a training run is still going: a RUNNING marker in its checkpoint folder while it trains.

`triglot eval --watch` stops when the run it follows has finished: the stage manifest is written and no
training process holds the marker. An export or manifest left by an earlier run is not enough.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUNNING = "RUNNING"
MANIFEST = "manifest.json"
PREEMPTED = "PREEMPTED"  # left by a run stopped by a signal: step and checkpoint, for the requeue


@contextmanager
def training_marker(root: Path, rank: int) -> Iterator[None]:
    """Rank 0 marks `root` as training for the duration; a stop by signal leaves the mark (a requeue resumes)."""
    from triglot.train.coordination import Preempted

    marker = root / RUNNING
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}) + "\n",
                       encoding="utf-8")
        os.replace(tmp, marker)
    try:
        yield
    except Preempted:
        raise
    except BaseException:
        if rank == 0:
            marker.unlink(missing_ok=True)  # failed: nothing will come after this
        raise
    if rank == 0:
        marker.unlink(missing_ok=True)


def training_finished(checkpoints_dir: Path) -> bool:
    """True once the run wrote its stage manifest and no training process is at work or waiting to resume."""
    return ((checkpoints_dir / MANIFEST).is_file() and not (checkpoints_dir / RUNNING).exists()
            and not (checkpoints_dir / PREEMPTED).exists())
