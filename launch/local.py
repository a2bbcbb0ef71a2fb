"""`triglot launch local`: a distributed stage under torchrun on this machine, or as one node of several.

Two launchers with --nnodes 2 and node ranks 0 and 1 (here or on two hosts) train together.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from triglot.launch.clusters import load_cluster
from triglot.launch.comm import comm_env
from triglot.launch.frozen import freeze_config, frozen_config_path
from triglot.launch.torchrun import run_ranks, torchrun_argv, triglot_target

from triglot.config import save_config
from triglot.stages import STAGES


def torchrun_command(stage: str, config_path: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str = "127.0.0.1", master_port: int = 29500, force: bool = False,
                     rendezvous_timeout_s: int = 900, stop_timeout_s: int = 300) -> list[str]:
    """torchrun (triglot.launch.torchrun) running `triglot <stage command> CONFIG` on this node.

    torchrun passes SIGINT, SIGTERM and SIGUSR1 on to the ranks and gives them stop_timeout_s to checkpoint.
    """
    target = triglot_target([*STAGES[stage].command, str(config_path), *(["--force"] if force else [])])
    stop = {"forward_signals": True, "stop_timeout_s": stop_timeout_s}
    if nnodes == 1:
        return torchrun_argv(nproc, target, **stop)
    return torchrun_argv(nproc, target, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                         master_port=master_port, rendezvous_timeout_s=rendezvous_timeout_s, **stop)


def launch_local(cfg: Any, stage: str, nproc: int, nnodes: int = 1, node_rank: int = 0,
                 master_addr: str = "127.0.0.1", master_port: int = 29500, force: bool = False,
                 dry_run: bool = False) -> int:
    """Freeze the resolved config and run the stage under torchrun; returns torchrun's exit code.

    The ranks read `<run.dir>/configs/<hash>.yaml`; `<run.dir>/config.yaml` is a copy of the latest launched
    config for people to read. A dry run writes nothing. A user error in a rank is raised here
    (RanksUserError), so the command prints it once and exits 2; a stop signal ends with StoppedBySignal.
    """
    config_path = frozen_config_path(cfg) if dry_run else freeze_config(cfg)
    cmd = torchrun_command(stage, config_path, nproc, nnodes, node_rank, master_addr, master_port, force,
                           int(cfg.launch.rendezvous_timeout_s), int(cfg.launch.stop_timeout_s))
    env = {**os.environ, **comm_env(cfg.hardware, load_cluster("local"), int(cfg.launch.cpus_per_rank))}
    if dry_run:
        print(shlex.join(cmd))  # pasted into a shell, it runs exactly this
        print(f"# dry run: nothing written; the ranks would read {config_path}")
        return 0
    if node_rank == 0:
        save_config(cfg, Path(cfg.run.dir) / "config.yaml")
    return run_ranks(cmd, env, run_dir=Path(cfg.run.dir))
