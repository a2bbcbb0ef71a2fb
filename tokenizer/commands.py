"""Command line for the tokenizer package: `triglot tokenizer train|extend` and `triglot data pack`.

Imports nothing heavy at module level; each handler imports its stage when it runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from triglot.cli import add_config_args, config_from_args


def _train(args: argparse.Namespace) -> int:
    from triglot.tokenizer.train import run_tokenizer_stage

    summary = run_tokenizer_stage(config_from_args(args), force=args.force)
    print(json.dumps(summary.get("counts", {}), ensure_ascii=False))
    return 0


def _extend(args: argparse.Namespace) -> int:
    from triglot.tokenizer.extend import run_extend

    summary = run_extend(config_from_args(args), force=args.force)
    print(json.dumps(summary.get("counts", {}), ensure_ascii=False))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from triglot.tokenizer.pack import run_pack_stage

    summary = run_pack_stage(config_from_args(args), force=args.force)
    print(json.dumps(summary.get("counts", {}), ensure_ascii=False))
    return 0


def add_commands(subparsers: Any, groups: dict[str, Any]) -> None:
    tok = subparsers.add_parser("tokenizer", help="train or extend a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True)
    train = tok_sub.add_parser("train", help="train a tokenizer on the cleaned data (fertility report included)")
    add_config_args(train)
    train.set_defaults(func=_train)
    extend = tok_sub.add_parser("extend", help="add frequent tokens an existing tokenizer splits badly")
    add_config_args(extend)
    extend.set_defaults(func=_extend)
    pack = groups["data"].add_parser("pack", help="tokenize cleaned data into memmap token shards")
    add_config_args(pack)
    pack.set_defaults(func=_pack)
