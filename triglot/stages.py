"""The stages `triglot run` chains, in order, and how each one is started."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
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


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run` on one node with `nproc` processes running `triglot ARGS`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "triglot", *args]


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
        nproc = int(cfg.run.nproc_per_node)
        if spec.distributed:
            # Always under torchrun, one process or many: ranks get the same environment either way.
            cmd = torchrun_command(nproc, [*spec.command, str(resolved), *(["--force"] if force else [])])
            env = {**os.environ, **{k: str(v) for k, v in cfg.hardware.env.items()}}
            result = subprocess.run(cmd, env=env)
            if result.returncode != 0:
                raise SystemExit(f"stage {name} failed with exit code {result.returncode}")
        else:
            func(cfg, force=force)
