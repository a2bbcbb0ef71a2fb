"""`triglot eval CONFIG [--checkpoint PATH] [--watch RUN_DIR] [overrides]`.

Imports nothing heavy at module level; the handler loads the eval stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from triglot.cli import add_config_args, config_from_args


def add_commands(subparsers: Any, groups: dict[str, Any]) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a checkpoint or Hugging Face folder on the eval suites (C-Eval, CMMLU, MMLU, HKCanto-Eval)")
    add_config_args(parser)
    parser.add_argument("--checkpoint", default=None,
                        help="Hugging Face folder or <run.dir>/checkpoints/step-XXXXXXXX/ (default: the run's newest "
                             "complete checkpoint, else <run.dir>/export)")
    parser.add_argument("--watch", default=None, metavar="RUN_DIR",
                        help="score each new checkpoint of this training run as it appears, logging to its W&B run")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from triglot.eval.runner import run_eval_stage, watch

    overrides = list(args.overrides)
    if args.checkpoint:
        overrides.append(f"eval.checkpoint={args.checkpoint}")
    args.overrides = overrides
    cfg = config_from_args(args)
    if args.watch:
        watch(cfg, Path(args.watch), force=args.force)
    else:
        summary = run_eval_stage(cfg, force=args.force)
        if summary.get("out_dir") and summary.get("rank", 0) == 0:
            print(Path(summary["out_dir"]) / "summary.md")
    return 0
