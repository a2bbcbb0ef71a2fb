"""Rank, world size and rendezvous read once from the environment (torchrun, Slurm or none)."""

from __future__ import annotations

import atexit
import os
import socket
from dataclasses import dataclass
from typing import Any, NoReturn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: dict, *names: str, default: int) -> int:
    for name in names:
        if env.get(name, "") != "":
            return int(env[name])
    return default


def read_dist_env(env: dict | None = None) -> DistEnv:
    """torchrun's variables win; Slurm's (srun without torchrun) are the fallback."""
    env = dict(os.environ if env is None else env)
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS", default=1)
    rank = _int(env, "RANK", "SLURM_PROCID", default=0)
    local_rank = _int(env, "LOCAL_RANK", "SLURM_LOCALID", default=0)
    local_world = _int(env, "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", default=1)
    node_rank = _int(env, "GROUP_RANK", "SLURM_NODEID", default=0)
    return DistEnv(
        rank=rank,
        world_size=world,
        local_rank=local_rank,
        local_world_size=local_world,
        node_rank=node_rank,
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=_int(env, "MASTER_PORT", default=29500),
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def world_of_one_env(env: dict | None = None) -> dict[str, str]:
    """The rendezvous variables a process started without a launcher lacks, for a world of one; else {}.

    torch's env:// rendezvous needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and DeepSpeed falls back to
    MPI discovery (mpi4py) when they are missing, so a bare `triglot train` sets them for itself.
    """
    env = dict(os.environ if env is None else env)
    dist = read_dist_env(env)
    if env.get("RANK", "") != "" or dist.world_size != 1:
        return {}
    return {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": env.get("MASTER_ADDR") or "127.0.0.1",
            "MASTER_PORT": env.get("MASTER_PORT") or str(free_port())}


def comm_backend(hardware: Any, accelerator: Any = None) -> str:
    """hardware.comm_backend; "auto" asks DeepSpeed's accelerator, as DeepSpeed itself does.

    On Intel XPU that is "ccl" when oneccl_bindings_for_pytorch is installed and "xccl" (torch's own) otherwise.
    """
    backend = str(hardware.comm_backend)
    if backend != "auto":
        return backend
    if accelerator is None:
        from deepspeed.accelerator import get_accelerator

        accelerator = get_accelerator()
    return str(accelerator.communication_backend_name())


def close_process_group() -> None:
    """Destroy the default process group, if one is up, while the interpreter is still whole.

    Left to interpreter teardown, gloo's worker threads can outlive the objects they hold and the
    process aborts ("terminate called without an active exception") after its work is done. Called
    on a clean finish only: after a failure a peer may be gone mid-collective, and waiting on it here
    would turn an exit code into a hang.
    """
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave(code: int) -> NoReturn:
    """End the process with `code`; a rank of a distributed job skips interpreter teardown.

    A rank that had a gloo process group can abort during interpreter finalisation ("terminate called
    without an active exception") after its work is done, even after destroy_process_group, turning exit
    code 0 into SIGABRT: objects that may still hold the group (DeepSpeed's and accelerate's state are
    the likely holders) are then freed while the interpreter is half gone. So a rank does what
    finalisation would do while everything is whole (join its non-daemon threads, run the atexit
    handlers: W&B, logging, temporary folders, flush the streams) and then exits at once.
    """
    import sys
    import threading

    if "WORLD_SIZE" not in os.environ or "torch.distributed" not in sys.modules:
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def finish_rank(code: int = 0) -> NoReturn:
    """The clean end of a program that torchrun starts on each rank: close the process group, then leave."""
    close_process_group()
    leave(code)
