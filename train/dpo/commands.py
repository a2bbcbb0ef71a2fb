"""`triglot dpo CONFIG`: preference tuning under torchrun (the `dpo` stage run on its own).

Imports stay cheap here: torch and transformers load inside the handler.
"""

from __future__ import annotations

import argparse
from typing import Any


def _dpo(args: argparse.Namespace) -> int:
    from triglot.train.coordination import exit_code
    from triglot.train.dpo.stage import run_dpo_stage, run_dpo_training

    from triglot.cli import config_from_args

    cfg = config_from_args(args)
    run = run_dpo_training if args.as_given else run_dpo_stage
    return exit_code("dpo", lambda: run(cfg, force=args.force))


def add_commands(subparsers: Any, groups: dict) -> None:
    from triglot.cli import add_config_args

    dpo = subparsers.add_parser("dpo", help="preference-tune on chosen/rejected pairs (run under torchrun); "
                                            "the `dpo` stage")
    add_config_args(dpo)
    dpo.add_argument("--as-given", action="store_true",
                     help="use model.pretrained and the output folders as configured, not the pipeline's "
                          "<run.dir>/sft/export -> <run.dir>/dpo/ layout")
    dpo.set_defaults(func=_dpo)
