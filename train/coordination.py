"""What ranks agree on: a preflight check that names silent ranks, and stop requests from signals.

SIGTERM, SIGUSR1 (Slurm's --signal, preemption) and a first SIGINT (Ctrl-C) only set a flag; the training
loop all-reduces it every step so all ranks stop at the same step, save a checkpoint and exit with
EXIT_PREEMPTED. A second SIGINT aborts at once.
"""

from __future__ import annotations

import datetime
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the job saved a checkpoint and wants to be requeued
EXIT_NONFINITE = 3
EXIT_OOM = 4
EXIT_DISK_FULL = 74  # EX_IOERR: a checkpoint did not fit on its disk


class PreflightError(RuntimeError):
    """Some ranks did not answer the preflight check in time."""


def preflight(timeout_s: float) -> None:
    """Every rank reaches this point and an all-reduce works; else name the ranks that did not answer.

    Uses gloo's monitored barrier (on a gloo side group when the main backend is not gloo), which
    reports the ranks that missed it, then one all-reduce over the main backend.
    """
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    timeout = datetime.timedelta(seconds=timeout_s)
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    try:
        dist.monitored_barrier(group=group, timeout=timeout, wait_all_ranks=True)
    except RuntimeError as err:
        raise PreflightError(f"preflight: not every rank answered within {timeout_s:.0f}s: {err}") from err
    from triglot.dist import read_dist_env
    from triglot.hardware import device_for

    probe = torch.ones(1, device=device_for(read_dist_env().local_rank))
    dist.all_reduce(probe)
    if int(probe.item()) != dist.get_world_size():
        raise PreflightError(f"preflight: all-reduce gave {probe.item()}, expected {dist.get_world_size()}")


class StopRequest:
    """Installs SIGTERM/SIGUSR1/SIGINT handlers that record the request; `requested` is this rank's view.

    A second SIGINT raises KeyboardInterrupt (abort). One Ctrl-C typed at plain torchrun reaches a rank twice
    (from the terminal and from torchrun), so a SIGINT within ABORT_AFTER_S of the first one does not count.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    ABORT_AFTER_S = 1.0

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._first_sigint = 0.0
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT:
            now = time.monotonic()
            if self._first_sigint and now - self._first_sigint > self.ABORT_AFTER_S:
                raise KeyboardInterrupt
            if self._first_sigint:
                return
            self._first_sigint = now
        if self.requested:
            return
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: will save a checkpoint and stop after this step", self.signal_name)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class DiskFull(Exception):
    """A checkpoint save ran (or would run) out of disk space; the message names it and the bytes."""


class Preempted(Exception):
    """All ranks agreed to stop after saving; the command exits with EXIT_PREEMPTED."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"stopped by signal after step {step}; checkpoint {checkpoint}; rerun to resume")
        self.step = step
        self.checkpoint = checkpoint


class NonFiniteLoss(RuntimeError):
    """The run cannot go on: a non-finite loss or gradient norm (or fp16 overflows it cannot recover from)."""

    HINT = ("lower train.lr, raise train.warmup_steps or check the data and model init "
            "(set train.on_nonfinite=skip to drop such batches instead)")

    def __init__(self, step: int, value: float, what: str = "loss", hint: str = HINT):
        super().__init__(f"{what} is {value} at step {step}; {hint}")
        self.step = step


class OverflowGuard:
    """fp16 loss scaling: DeepSpeed skips a step whose gradients overflow and lowers the scale.

    `check()` counts such steps (DeepSpeed's `skipped_steps`) and stops the run after
    `max_in_row` overflows in a row (0: never), or at an overflow the scale can no longer absorb:
    at the minimum dynamic scale, or at any static scale. Ranks agree without communicating:
    DeepSpeed all-reduces the overflow flag, and the scale is the same everywhere.
    """

    def __init__(self, engine: Any, max_in_row: int):
        self.engine, self.max_in_row, self.in_row = engine, max_in_row, 0
        self.active = bool(engine.fp16_enabled())
        scaler = getattr(engine.optimizer, "loss_scaler", None)
        if self.active and hasattr(scaler, "raise_error_at_min_scale"):
            scaler.raise_error_at_min_scale = False  # check() raises a NonFiniteLoss instead of a bare Exception

    def scale(self) -> float:
        return float(self.engine.optimizer.loss_scale) if self.active else 1.0

    def min_scale(self) -> float:
        if self.engine.dynamic_loss_scale():
            return float(self.engine.dynamic_loss_scale_args()["min_scale"])
        return self.scale()

    def check(self, step: int, loss_nonfinite: bool, scale_before: float) -> None:
        """After DeepSpeed's optimizer step: reset the count, or count an overflow and maybe stop."""
        if self.engine.was_step_applied():
            self.in_row = 0
            return
        self.in_row += 1
        what, value = ("loss", float("nan")) if loss_nonfinite else ("gradient norm", float("inf"))
        log.warning("fp16 overflow at step %d (loss scale %g): step skipped, %d in a row", step, scale_before,
                    self.in_row)
        if scale_before <= self.min_scale():
            raise NonFiniteLoss(step, value, what=f"{what} at the minimum fp16 loss scale {scale_before:g}")
        if self.max_in_row and self.in_row >= self.max_in_row:
            raise NonFiniteLoss(step, value, what=f"{what} ({self.in_row} fp16 overflows in a row, loss "
                                f"scale now {self.scale():g})", hint="lower train.lr or raise train.warmup_steps; "
                                "train.max_overflow_steps sets how many overflows in a row are tolerated")


def oom_message(step: int, cfg: Any, err: BaseException) -> str:
    t = cfg.train
    hints = ["lower train.micro_batch_size (raise accumulation instead; train.global_batch_size stays)"]
    if not cfg.hardware.activation_checkpointing:
        hints.append("set hardware.activation_checkpointing=true")
    if t.zero_stage < 3:
        hints.append(f"raise train.zero_stage (now {t.zero_stage}) to shard more state")
    if not t.offload_optimizer:
        hints.append("set train.offload_optimizer=true")
    hints.append(f"lower train.seq_len (now {t.seq_len})")
    return f"out of memory at step {step} ({str(err).splitlines()[0][:200]}); try: " + "; ".join(hints)


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def exit_code(command: str, run: Callable[[], Any]) -> int:
    """Run a training command; a stop with an exit code of its own is reported on stderr and returned."""
    codes = {Preempted: EXIT_PREEMPTED, NonFiniteLoss: EXIT_NONFINITE, MemoryError: EXIT_OOM,
             DiskFull: EXIT_DISK_FULL}
    try:
        run()
    except tuple(codes) as err:
        code = next(code for kind, code in codes.items() if isinstance(err, kind))
        line = f"triglot {command}: {err}"
        if isinstance(err, Preempted):
            print(line, file=sys.stderr)  # the launcher that sent the signal ends the output itself
        else:
            # Every rank stops with the same line: the launcher (run, launch local, the job script) prints it
            # once and exits with this code instead of torchrun's 1 and its traceback.
            from triglot.cli import report_user_error

            report_user_error(line, code)
        return code
    return 0
