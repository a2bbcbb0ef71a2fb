"""Checkpoint tools that run in one process on any node (no GPU, no torch.distributed).

`triglot export CHECKPOINT OUT`: a saved checkpoint to a Hugging Face folder, streamed shard by shard.
`triglot ckpt reshard CHECKPOINT`: DeepSpeed's universal form, so the run can resume at another world size.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from triglot.errors import InputError, TriglotError

log = logging.getLogger(__name__)


class TookTooLong(TriglotError):
    """A checkpoint tool ran past its --timeout-s."""


@contextmanager
def time_limit(seconds: float, what: str):
    """Raise TookTooLong after `seconds` (0: no limit); SIGALRM, so only in the main thread."""
    def expire(signum: int, frame: Any) -> None:
        raise TookTooLong(f"{what} did not finish within --timeout-s {seconds:g}; rerun with a larger --timeout-s "
                          "(0: no limit) or more --workers")

    if seconds <= 0:
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _checkpoint(path: str) -> Path:
    folder = Path(path)
    if not (folder / "state").is_dir():
        raise InputError(f"{folder} is not a triglot checkpoint (no state/ folder); pass a "
                         "<checkpoints>/step-XXXXXXXX folder")
    return folder


def _export(args: argparse.Namespace) -> int:
    from triglot.train.export_offline import export_checkpoint

    folder = _checkpoint(args.checkpoint)
    with time_limit(args.timeout_s, f"export of {folder}"):
        out = export_checkpoint(folder, Path(args.out), args.max_shard_size, args.dtype)
    print(out)
    return 0


def _reshard(args: argparse.Namespace) -> int:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # a CPU node: DeepSpeed must not look for a GPU
    from triglot.train import checkpoint as ckpt

    folder = _checkpoint(args.checkpoint)
    problem = ckpt.verify(folder, checksums=False)
    if problem:
        raise InputError(f"checkpoint {folder} is not whole ({problem}); reshard an earlier step")
    with time_limit(args.timeout_s, f"conversion of {folder}"):
        out = ckpt.to_universal(folder, workers=args.workers)
    print(out)
    return 0


def add_commands(subparsers: Any, groups: dict) -> None:
    export = subparsers.add_parser("export", help="convert a saved checkpoint to a Hugging Face folder (one CPU "
                                                  "process, streamed)")
    export.add_argument("checkpoint", help="a <checkpoints>/step-XXXXXXXX folder, any ZeRO stage and world size")
    export.add_argument("out", help="output folder (written aside and renamed into place)")
    export.add_argument("--max-shard-size", default="", help="e.g. 5GB (default: the run's train.export setting)")
    export.add_argument("--dtype", default="", choices=["", "fp32", "bf16", "fp16"],
                        help="weights' dtype (default: the run's hardware.precision)")
    export.add_argument("--timeout-s", type=float, default=0, help="give up after this many seconds (0: never)")
    export.set_defaults(func=_export)

    ckpt = subparsers.add_parser("ckpt", help="checkpoint tools").add_subparsers(dest="ckpt_command", required=True)
    groups["ckpt"] = ckpt
    reshard = ckpt.add_parser("reshard", help="convert a checkpoint to DeepSpeed's universal form, to resume it at "
                                              "another world size or ZeRO stage")
    reshard.add_argument("checkpoint", help="a <checkpoints>/step-XXXXXXXX folder")
    reshard.add_argument("--workers", type=int, default=1, help="processes for DeepSpeed's extract and merge steps")
    reshard.add_argument("--timeout-s", type=float, default=3600, help="give up after this many seconds (0: never)")
    reshard.set_defaults(func=_reshard)
