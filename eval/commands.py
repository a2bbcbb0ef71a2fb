"""`triglot eval CONFIG [--checkpoint PATH] [--watch RUN_DIR] [overrides]`.

Imports nothing heavy at module level; the handler loads the eval stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from triglot.cli import add_config_args, config_from_args
from triglot.errors import ConfigError, InputError


def add_commands(subparsers: Any, groups: dict[str, Any]) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a checkpoint or Hugging Face folder on the eval suites (C-Eval, CMMLU, MMLU, HKCanto-Eval)")
    add_config_args(parser)
    # `triglot eval --list-suites` needs no experiment: the config becomes optional for that one flag.
    next(a for a in parser._actions if a.dest == "config").nargs = "?"
    parser.add_argument("--list-suites", action="store_true",
                        help="list the suites (configs/eval/*.yaml and eval.suite_dirs) with language and size")
    parser.add_argument("--checkpoint", default=None,
                        help="Hugging Face folder or <run.dir>/checkpoints/step-XXXXXXXX/ (default: the run's newest "
                             "complete checkpoint, else <run.dir>/export)")
    parser.add_argument("--watch", default=None, metavar="RUN_DIR",
                        help="score each new checkpoint of this training run as it appears, logging to its W&B run")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from triglot.eval.runner import run_eval_stage, watch

    if args.list_suites:
        return list_suites(args)
    if args.config is None:
        raise ConfigError("triglot eval needs an experiment file (or --list-suites); e.g. triglot eval "
                          "configs/experiments/quickstart.yaml --checkpoint PATH")
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


def list_suites(args: argparse.Namespace) -> int:
    """One line a suite: name, language and script, subjects, questions in its default split, file."""
    from triglot.eval.suites import LoadReport, open_suite, suite_dirs

    from triglot.config import compose, load_config

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not Path(args.config).exists():
        overrides.insert(0, args.config)  # `eval --list-suites key=value`: no experiment file given
        args.config = None
    cfg = load_config(args.config, overrides) if args.config else compose({}, overrides)
    ecfg = cfg.eval
    print(f"{'suite':<24} {'language':<20} {'default':<7} {'subjects':>8} {'questions':>9}  split  file")
    for folder in suite_dirs(list(ecfg.suite_dirs)):
        for path in sorted(folder.glob("*.yaml")):
            try:
                suite = open_suite(str(path), ecfg.benchmarks_dir, dirs=list(ecfg.suite_dirs))
                subjects = suite.subjects()
                split = suite.default_split
                report = LoadReport()
                size = str(sum(len(suite.load(s, split, report)) for s in subjects))
            except (ConfigError, InputError, OSError) as err:
                print(f"{path.stem:<24} {'not loadable here':<20} {'':<7} {'?':>8} {'?':>9}  -      {path}\n    {str(err)[:160]}")
                continue
            default = "yes" if suite.spec.get("default") else ""
            language = suite.language + (f"/{suite.script}" if suite.script else "")
            print(f"{suite.name:<24} {language:<20} {default:<7} {len(subjects):>8} {size:>9}  {split:<6} {path}")
    return 0
