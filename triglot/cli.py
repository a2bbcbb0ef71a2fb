"""The `triglot` command: one dispatcher; each stage package adds its own subcommands.

User errors (bad config, missing inputs) print one message and exit 2, never a traceback, however triglot was
started: a rank under a triglot launcher writes its message to $TRIGLOT_ERROR_FILE and the launcher prints it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from triglot.config import config_hash, load_config, to_yaml
from triglot.dist import close_process_group, leave
from triglot.errors import ConfigError, TriglotError

# Stage packages that add subcommands through `add_commands(subparsers, groups)`.
COMMAND_MODULES = ("triglot.data_pipeline.commands", "triglot.tokenizer.commands", "triglot.train.commands",
                   "triglot.train.sft.commands", "triglot.train.dpo.commands", "triglot.train.ckpt_commands",
                   "triglot.eval.commands", "triglot.launch.commands", "triglot.launch.plan_commands")
EXIT_USAGE = 2
# Set by triglot's launchers (triglot.launch.torchrun, job scripts) for the processes they start: a user error
# is written there, first writer wins, and the launcher prints it once instead of every rank printing it.
ERROR_FILE_VAR = "TRIGLOT_ERROR_FILE"


class RanksUserError(TriglotError):
    """A user error that a rank reported; its message is that rank's line, printed as it is."""


class RanksStopped(Exception):
    """The ranks stopped with an exit code of their own (non-finite loss, out of memory, disk full)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def parse_rank_report(text: str) -> tuple[int, str]:
    """(exit code, line) from what report_user_error left in the file."""
    head, sep, rest = text.partition("\t")
    if sep and head.isdigit():
        return int(head), rest.strip()
    return EXIT_USAGE, text.strip()


class StoppedBySignal(Exception):
    """The ranks stopped on a signal (checkpointed or aborted); the message ends the output, `code` is the exit."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def user_error_line(err: TriglotError) -> str:
    """The one line a user error prints: `triglot: [config error: ]MESSAGE`."""
    if isinstance(err, RanksUserError):
        return str(err)
    kind = "config error: " if isinstance(err, ConfigError) else ""
    return " ".join(f"triglot: {kind}{err}".split())


def report_user_error(line: str, code: int = EXIT_USAGE) -> None:
    """Print `line` on stderr, or leave it in $TRIGLOT_ERROR_FILE for the launcher that set it.

    The file holds the line, preceded by `<exit code>\t` when the code is not 2 (a rank that stopped on a
    non-finite loss, out of memory or a full disk), so the launcher exits as the rank did.
    """
    path = os.environ.get(ERROR_FILE_VAR)
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # another rank's message is already there; one is enough
        except OSError:
            pass  # the launcher's folder is gone: print instead
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write((f"{code}\t" if code != EXIT_USAGE else "") + line + "\n")
            return
    print(line, file=sys.stderr)


def setup_logging(level: str | None = None) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = level or os.environ.get("TRIGLOT_LOG_LEVEL", "INFO" if rank == 0 else "WARNING")
    logging.basicConfig(level=level, format=f"%(asctime)s [rank{rank}] %(name)s: %(message)s", datefmt="%H:%M:%S")


def add_config_args(parser: argparse.ArgumentParser, force: bool = True) -> None:
    """The positional experiment file plus `key=value` overrides (and --force) every stage takes."""
    parser.add_argument("config", help="experiment YAML (configs/experiments/...) or a run's config.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=0.001 model=125m")
    if force:
        parser.add_argument("--force", action="store_true", help="rerun even if the stage's manifest is current")


def config_from_args(args: argparse.Namespace) -> Any:
    return load_config(args.config, args.overrides)


def _config_show(args: argparse.Namespace) -> int:
    try:  # a bare data config (top-level `sources`) resolves as `data clean` reads it
        from triglot.data_pipeline.commands import load_clean_config
    except ModuleNotFoundError:
        cfg = config_from_args(args)
    else:
        cfg = load_clean_config(args)
    print(to_yaml(cfg), end="")
    print(f"# config hash: {config_hash(cfg)}")
    return 0


def _hardware(args: argparse.Namespace) -> int:
    from triglot.config import compose
    from triglot.hardware import detect

    device = detect()
    cfg = compose({"defaults": {"hardware": args.profile}})
    hw = cfg.hardware
    print(f"detected:    {device.accelerator} x{device.count} ({device.product})")
    if device.note:
        print(f"note:        {device.note}")
    print(f"profile:     {hw.name}  ({hw.description})")
    print(f"precision:   {hw.precision.value}")
    print(f"attention:   {hw.attention.value}")
    print(f"backend:     {hw.comm_backend}")
    peaks = ", ".join(f"{k} {v:g}" for k, v in hw.peak_tflops.items())
    print(f"peak TFLOPS: {peaks}")
    print(f"tested:      {'yes' if hw.tested else 'no (loaded and validated only)'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from triglot.stages import run_experiment

    run_experiment(config_from_args(args), force=args.force, only=args.only, config=args.config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triglot", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO on rank 0)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = sub.add_parser("config", help="inspect configs").add_subparsers(dest="config_command", required=True)
    show = config.add_parser("show", help="print the resolved config and its hash")
    add_config_args(show, force=False)
    show.set_defaults(func=_config_show)

    hw = sub.add_parser("hardware", help="show the detected device and the profile chosen for it")
    hw.add_argument("--profile", default="auto", help="profile to show instead of the detected one")
    hw.set_defaults(func=_hardware)

    run = sub.add_parser("run", help="run an experiment's stages in order, skipping up-to-date ones")
    add_config_args(run)
    run.add_argument("--only", nargs="+", metavar="STAGE", help="run just these stages")
    run.set_defaults(func=_run)

    groups = {"data": sub.add_parser("data", help="data stages").add_subparsers(dest="data_command", required=True)}
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        module.add_commands(sub, groups)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    # Overrides may also follow options (`eval CONFIG --checkpoint P train.lr=1`): argparse stops
    # collecting the positional list at the first option, so pick up the `key=value` leftovers here.
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = int(func(args) or 0)
    except TriglotError as err:
        report_user_error(user_error_line(err))
        return EXIT_USAGE
    except (PermissionError, NotADirectoryError, IsADirectoryError) as err:
        if not err.filename:
            raise
        # An output folder the config names but this machine does not let the stage write: the user's to fix.
        report_user_error(f"triglot: cannot write {err.filename}: {err.strerror}; check the folder settings "
                          "(run.dir, or the stage's output_dir) and its permissions")
        return EXIT_USAGE
    except (StoppedBySignal, RanksStopped) as stop:
        print(stop, file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print("triglot: interrupted", file=sys.stderr)
        return 130
    if code == 0:
        close_process_group()
    return code


def run() -> None:
    """The `triglot` command and `python -m triglot`: main's exit code, without teardown aborts in a rank."""
    leave(main())


if __name__ == "__main__":
    run()
