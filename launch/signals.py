"""Stop signals of a launcher (`triglot launch local`, `triglot run`) reach the torchrun it started.

torchrun runs in a session of its own, so a terminal's Ctrl-C reaches only the launcher, which then decides:
the first Ctrl-C (or SIGTERM, SIGHUP, SIGUSR1) is passed on, torchrun passes it to every rank and training
saves a checkpoint and stops; a second one kills torchrun and its ranks at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from triglot.train.run_state import PREEMPTED

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
# What a stopped rank leaves in its checkpoint folder (train/trainer.py writes it).
PR_SET_PDEATHSIG = 1


def signal_label(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _say(text: str) -> None:
    # os.write, not print: a handler may interrupt a print to the same stream.
    os.write(sys.stderr.fileno(), (text + "\n").encode())


def _die_with_parent() -> None:
    """In the child before exec: torchrun gets SIGTERM (and checkpoints) when its launcher dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: a launcher killed with -9 leaves torchrun running, as torchrun alone would


def start_ranks(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start torchrun in its own session, so the terminal's Ctrl-C goes to the launcher alone."""
    return subprocess.Popen(cmd, env=env, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it (torchrun starts each rank in a session of its own)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class SignalRelay:
    """While torchrun runs: pass the first stop signal on to it, kill it and its ranks at the second."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.received: list[int] = []
        self.started = time.time()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalRelay:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def aborted(self) -> bool:
        return len(self.received) > 1

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        label = signal_label(signum)
        if len(self.received) == 1:
            _say(f"triglot: {label}: asking every rank to save a checkpoint and stop "
                 "(press Ctrl-C again to abort at once, without a checkpoint)")
            # torchrun passes SIGINT, SIGTERM and SIGUSR1 on to the ranks; SIGHUP would end them unsaved.
            forward = signal.SIGTERM if signum == signal.SIGHUP else signum
            try:
                self.proc.send_signal(forward)
            except ProcessLookupError:
                pass
            return
        _say(f"triglot: second {label}: aborting now, without a checkpoint")
        kill_tree(self.proc.pid)

    def wait(self) -> int:
        return self.proc.wait()

    def stop_message(self, run_dir: Path | None, code: int) -> tuple[str, int]:
        """The line that ends the output after a stop, and the launcher's exit code."""
        from triglot.train.coordination import EXIT_PREEMPTED

        label = signal_label(self.received[0])
        if self.aborted:
            return (f"triglot: aborted by a second {label}; a rerun resumes from the newest complete checkpoint, "
                    "if there is one"), 128 + int(self.received[-1])
        marker = newest_marker(run_dir, self.started) if run_dir else None
        if marker:
            import json

            info = json.loads(marker.read_text(encoding="utf-8"))
            return (f"triglot: stopped by {label} after step {info['step']}; every rank saved checkpoint "
                    f"{info['checkpoint']}; run the same command again to resume from it"), EXIT_PREEMPTED
        return (f"triglot: stopped by {label} (torchrun exit code {code}); no checkpoint was saved in this "
                "attempt"), 128 + int(self.received[0])


def newest_marker(run_dir: Path, since: float) -> Path | None:
    """The PREEMPTED marker a rank wrote below run_dir after `since`, if any."""
    found = []
    for path in Path(run_dir).rglob(PREEMPTED):
        try:
            if path.stat().st_mtime >= since - 1:
                found.append(path)
        except OSError:
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
