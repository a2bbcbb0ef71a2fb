"""The one place torchrun command lines are built, and a torchrun that reports a rank's user error as exit 2.

`python -m triglot.launch.torchrun ARGS` takes torchrun's arguments and behaves like it, except when a rank
stops on a user error (ConfigError, InputError): the rank writes its one-line message to $TRIGLOT_ERROR_FILE
(see triglot.cli.report_user_error); this launcher prints it once and exits 2, without torchrun's
ChildFailedError traceback. When its caller set TRIGLOT_ERROR_FILE, the caller prints the message instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triglot.cli import (
    ERROR_FILE_VAR,
    EXIT_USAGE,
    RanksStopped,
    RanksUserError,
    StoppedBySignal,
    parse_rank_report,
)


class Var(str):
    """A shell expression built by triglot itself (e.g. "$CONFIG"); a job script writes it inside double quotes."""


def _option(name: str, value: Any) -> str:
    """`--name=value`; a shell expression as value keeps the whole option a shell expression."""
    text = f"--{name}={value}"
    return Var(text) if isinstance(value, Var) else text


# torchrun itself (what users type), or this module around it (what triglot's launchers start).
TORCHRUN = "torch.distributed.run"
TRIGLOT_TORCHRUN = "triglot.launch.torchrun"
# Signals torchrun passes on to the ranks: Slurm's early warning (USR1) and the usual stop signals.
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


def torchrun_argv(nproc: Any, target: Sequence[Any], nnodes: Any = 1, node_rank: Any = 0,
                  master_addr: Any = "127.0.0.1", master_port: Any = None, rendezvous_timeout_s: int = 0,
                  stop_timeout_s: int = 0, forward_signals: bool = False, python: Any = None,
                  launcher: str = TRIGLOT_TORCHRUN, max_restarts: int = 0) -> list[Any]:
    """`python -m LAUNCHER [options] TARGET`, where TARGET is `-m triglot ARGS` or `SCRIPT ARGS`.

    One node without a port uses torchrun's --standalone rendezvous; otherwise node rank 0 hosts a static
    rendezvous at master_addr:master_port. Values may be shell expressions (Var) that a job script expands,
    such as "$MASTER_ADDR"; node_rank None leaves it to torchrun's PET_NODE_RANK variable, set on each node.
    """
    cmd: list[Any] = [python or sys.executable, "-m", launcher, _option("nproc-per-node", nproc)]
    if nnodes == 1 and master_port is None:
        cmd.append("--standalone")
    else:
        cmd += [_option("nnodes", nnodes), *([] if node_rank is None else [_option("node-rank", node_rank)]),
                _option("master-addr", master_addr),
                _option("master-port", master_port if master_port is not None else 29500)]
    if rendezvous_timeout_s:
        cmd.append(f"--rdzv-conf=timeout={rendezvous_timeout_s}")
    if forward_signals:
        cmd.append(f"--signals-to-handle={FORWARDED_SIGNALS}")
    if stop_timeout_s:
        cmd.append(f"--shutdown-timeout={stop_timeout_s}")
    cmd.append(f"--max-restarts={max_restarts}")
    return [*cmd, *target]


def triglot_target(args: Sequence[Any]) -> list[Any]:
    """The ranks' program: `python -m triglot ARGS`."""
    return ["-m", "triglot", *args]


def read_user_error(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def run_ranks(cmd: Sequence[str], env: dict[str, str] | None = None, run_dir: Path | None = None) -> int:
    """Run a torchrun command line; returns its exit code.

    A user error from a rank is raised here (RanksUserError, exit 2). A stop signal to this process is passed
    on to torchrun (see launch.signals); then StoppedBySignal is raised with the line that ends the output,
    naming the checkpoint the ranks saved below `run_dir`.
    """
    from triglot.launch.signals import SignalRelay, start_ranks

    with tempfile.TemporaryDirectory(prefix="triglot-ranks-") as folder:
        error_file = Path(folder) / "user-error"
        proc = start_ranks(list(cmd), {**(env or os.environ), ERROR_FILE_VAR: str(error_file)})
        with SignalRelay(proc) as relay:
            code = relay.wait()
        message = read_user_error(error_file)
    if code != 0 and message:  # a user error (2), a stop with a code of its own, or 0 for a stop after the end
        rank_code, line = parse_rank_report(message)
        if rank_code == EXIT_USAGE:
            raise RanksUserError(line)
        raise RanksStopped(line, rank_code)
    if relay.received:
        raise StoppedBySignal(*relay.stop_message(run_dir, code))
    return code


def _torchrun(argv: Sequence[str]) -> None:
    from torch.distributed.elastic.multiprocessing.errors import record
    from torch.distributed.run import parse_args, run

    record(run)(parse_args(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """torchrun with user errors reported as one line and exit 2 (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = sys.argv[1:] if argv is None else argv
    given = os.environ.get(ERROR_FILE_VAR)
    with tempfile.TemporaryDirectory(prefix="triglot-ranks-") as folder:
        error_file = Path(given or Path(folder) / "user-error")
        os.environ[ERROR_FILE_VAR] = str(error_file)  # the ranks inherit it
        try:
            _torchrun(argv)
        except ChildFailedError:
            message = read_user_error(error_file)
            if not message:
                raise
            code, line = parse_rank_report(message)
            if not given:
                print(line, file=sys.stderr)
            return code
        except SignalException as err:
            # The ranks had their stop signal and have ended; the launcher that sent it says what happened,
            # so no traceback here. A signal that came after the last step leaves a report with code 0
            # (a caller that set TRIGLOT_ERROR_FILE reads it there itself).
            message = "" if given else read_user_error(error_file)
            if message.startswith("0\t"):
                print(parse_rank_report(message)[1], file=sys.stderr)
                return 0
            return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
