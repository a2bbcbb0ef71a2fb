"""`triglot launch local`: a distributed stage under torchrun on this machine, or as one node of several.

Two launchers with --nnodes 2 and node ranks 0 and 1 (here or on two hosts) train together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from triglot.launch.clusters import load_cluster
from triglot.launch.comm import comm_env
from triglot.launch.torchrun import run_ranks, torchrun_argv, triglot_target

from triglot.config import save_config
from triglot.stages import STAGES


def torchrun_command(stage: str, config_path: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str = "127.0.0.1", master_port: int = 29500, force: bool = False,
                     rendezvous_timeout_s: int = 900) -> list[str]:
    """torchrun (triglot.launch.torchrun) running `triglot <stage command> CONFIG` on this node."""
    target = triglot_target([*STAGES[stage].command, str(config_path), *(["--force"] if force else [])])
    if nnodes == 1:
        return torchrun_argv(nproc, target)
    return torchrun_argv(nproc, target, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                         master_port=master_port, rendezvous_timeout_s=rendezvous_timeout_s)


def launch_local(cfg: Any, stage: str, nproc: int, nnodes: int = 1, node_rank: int = 0,
                 master_addr: str = "127.0.0.1", master_port: int = 29500, force: bool = False,
                 dry_run: bool = False) -> int:
    """Save the resolved config and run the stage under torchrun; returns torchrun's exit code.

    A user error in a rank is raised here (RanksUserError), so the command prints it once and exits 2.
    """
    # Launchers of one run may start at the same moment; each node writes its own copy of the same config.
    name = "config.yaml" if node_rank == 0 else f"config-node{node_rank}.yaml"
    config_path = save_config(cfg, Path(cfg.run.dir) / name)
    cmd = torchrun_command(stage, config_path, nproc, nnodes, node_rank, master_addr, master_port, force,
                           int(cfg.launch.rendezvous_timeout_s))
    env = {**os.environ, **comm_env(cfg.hardware, load_cluster("local"), int(cfg.launch.cpus_per_rank))}
    if dry_run:
        print(" ".join(cmd))
        return 0
    return run_ranks(cmd, env)
