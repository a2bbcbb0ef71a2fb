"""The stages `triglot run` chains, in order, and how each one is started."""

from __future__ import annotations

import importlib
import logging
import os
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


def run_experiment(cfg: Any, force: bool = False, only: list[str] | None = None) -> None:
    """Run the experiment's stages in order; each one skips itself when its manifest is current."""
    names = list(only or cfg.run.stages)
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage '{name}' in run.stages; stages are: {', '.join(STAGES)}")
    resolved = save_config(cfg, Path(cfg.run.dir) / "config.yaml")
    for name in names:
        spec = STAGES[name]
        func = spec.load()
        if func is None:
            log.warning("stage %s is not part of this installation; skipping it", name)
            continue
        log.info("== stage %s", name)
        if spec.distributed:
            # Always under torchrun, one process or many: ranks get the same environment either way.
            run_distributed(cfg, spec, resolved, force)
        else:
            func(cfg, force=force)
