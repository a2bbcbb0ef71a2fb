"""`triglot train CONFIG [overrides]`: run the training stage on this rank (start it under torchrun).

Exit codes: 0 done, 2 config/input error, 3 non-finite loss, 4 out of memory, 75 stopped by a signal
after saving a checkpoint (requeue to resume).
"""

from __future__ import annotations

import argparse
from typing import Any


def _train(args: argparse.Namespace) -> int:
    from triglot.train.coordination import exit_code
    from triglot.train.trainer import run_train_stage

    from triglot.cli import config_from_args

    cfg = config_from_args(args)
    return exit_code("train", lambda: run_train_stage(cfg, force=args.force))


def add_commands(subparsers: Any, groups: dict) -> None:
    from triglot.cli import add_config_args

    parser = subparsers.add_parser("train", help="pretrain or fine-tune with DeepSpeed (run under torchrun)")
    add_config_args(parser)
    parser.set_defaults(func=_train)
