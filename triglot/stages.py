"""The stages `triglot run` chains, in order, and how each one is started."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triglot.config import ConfigError, save_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    name: str
    entry: str  # "module:function"; the function takes (cfg, force) and returns a summary dict
    command: tuple[str, ...]  # `triglot` subcommand that runs this stage on its own
    distributed: bool = False  # started under torchrun with run.nproc_per_node processes

    def load(self) -> Callable[..., Any] | None:
        module_name, func = self.entry.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                return None
            raise
        return getattr(module, func)


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("clean", "triglot.data_pipeline.clean:run_clean_stage", ("data", "clean")),
        StageSpec("tokenizer", "triglot.tokenizer.train:run_tokenizer_stage", ("tokenizer", "train")),
        StageSpec("pack", "triglot.tokenizer.pack:run_pack_stage", ("data", "pack")),
        StageSpec("train", "triglot.train.trainer:run_train_stage", ("train",), distributed=True),
        StageSpec("sft", "triglot.train.sft.stage:run_sft_stage", ("sft",), distributed=True),
        StageSpec("dpo", "triglot.train.dpo.stage:run_dpo_stage", ("dpo",), distributed=True),
        StageSpec("eval", "triglot.eval.runner:run_eval_stage", ("eval",), distributed=True),
    )
}


def run_distributed(cfg: Any, spec: StageSpec, config_path: Path, force: bool) -> None:
    """The stage under torchrun on this machine, run.nproc_per_node ranks; a rank's user error is raised here."""
    from triglot.launch.torchrun import run_ranks, torchrun_argv, triglot_target

    args = [*spec.command, str(config_path), *(["--force"] if force else [])]
    cmd = torchrun_argv(int(cfg.run.nproc_per_node), triglot_target(args), forward_signals=True,
                        stop_timeout_s=int(cfg.launch.stop_timeout_s))
    env = {**os.environ, **{k: str(v) for k, v in cfg.hardware.env.items()}}
    code = run_ranks(cmd, env, run_dir=Path(cfg.run.dir))
    if code != 0:
        raise SystemExit(f"stage {spec.name} failed with exit code {code}")


def run_experiment(cfg: Any, force: bool = False, only: list[str] | None = None, config: str = "") -> list:
    """Run the experiment's stages in order, then print the run's summary; returns each stage's outcome.

    A stage whose manifest is current skips itself; a distributed one is asked here first, so that a current
    stage costs no torchrun and DeepSpeed start.
    """
    from triglot.launch.frozen import freeze_config
    from triglot.run_summary import StageOutcome, run_summary

    names = list(only or cfg.run.stages)
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage '{name}' in run.stages; stages are: {', '.join(STAGES)}")
    resolved = freeze_config(cfg)
    save_config(cfg, Path(cfg.run.dir) / "config.yaml")  # the latest run's config, for people to read
    outcomes = []
    for name in names:
        started = time.monotonic()
        status = run_stage(cfg, STAGES[name], resolved, force)
        outcomes.append(StageOutcome(name, status, time.monotonic() - started))
    print(run_summary(cfg, outcomes, config or str(resolved)), flush=True)
    return outcomes


def run_stage(cfg: Any, spec: StageSpec, resolved: Path, force: bool) -> str:
    """Run one stage; returns "ran", "current" or "not installed"."""
    from triglot.stage_current import stage_is_current

    func = spec.load()
    if func is None:
        log.warning("stage %s is not part of this installation; skipping it", spec.name)
        return "not installed"
    if spec.distributed and not force and stage_is_current(spec.name, cfg):
        log.info("== stage %s is current; skipping (use --force to rerun)", spec.name)
        return "current"
    log.info("== stage %s", spec.name)
    if spec.distributed:
        # Always under torchrun, one process or many: ranks get the same environment either way.
        run_distributed(cfg, spec, resolved, force)
        return "ran"
    summary = func(cfg, force=force)
    return "current" if _was_skipped(summary) else "ran"


def _was_skipped(summary: Any) -> bool:
    """A non-distributed stage that found its manifest current returns that manifest (with its old timings)."""
    if not isinstance(summary, dict) or "timings" not in summary:
        return False
    finished = summary.get("timings", {}).get("finished")
    return isinstance(finished, (int, float)) and finished < _STARTED


_STARTED = time.time()  # this process's start: a manifest finished before it was not written by this run
