"""Communication settings per collective library (NCCL, RCCL, HCCL, oneCCL, gloo) for generated job scripts.

The hardware profile's `env` and then the cluster profile's `env` are laid over these defaults.
"""

from __future__ import annotations

import re
from typing import Any

from triglot.errors import ConfigError

# Defaults that make failures visible and collectives time out instead of hanging, per torch backend.
BACKEND_ENV: dict[str, dict[str, str]] = {
    # NVIDIA NCCL, and AMD RCCL (ROCm builds of torch expose RCCL under the "nccl" name).
    "nccl": {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN"},
    # Huawei Ascend and Intel Gaudi.
    "hccl": {"HCCL_CONNECT_TIMEOUT": "1200"},
    # Intel oneCCL (oneccl_bindings_for_pytorch); torchrun starts the ranks, not mpirun.
    "ccl": {"CCL_PROCESS_LAUNCHER": "none", "CCL_ATL_TRANSPORT": "ofi", "CCL_ZE_IPC_EXCHANGE": "sockets"},
    "xccl": {"CCL_PROCESS_LAUNCHER": "none", "CCL_ATL_TRANSPORT": "ofi", "CCL_ZE_IPC_EXCHANGE": "sockets"},
    "gloo": {},
}

# Variables naming the network interface, per backend (gloo carries rendezvous-side traffic for all of them).
IFNAME_VARS: dict[str, tuple[str, ...]] = {
    "nccl": ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"),
    "hccl": ("HCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"),
    "ccl": ("FI_TCP_IFACE", "GLOO_SOCKET_IFNAME"),
    "xccl": ("FI_TCP_IFACE", "GLOO_SOCKET_IFNAME"),
    "gloo": ("GLOO_SOCKET_IFNAME",),
}


# The backend family of `comm_backend: auto`, known when the script is written (the exact name is resolved on
# the node by DeepSpeed's accelerator, triglot.dist.comm_backend): XPU's ccl and xccl share oneCCL's settings.
AUTO_FAMILY = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl", "hpu": "hccl", "xpu": "ccl"}


def backend_family(hardware: Any) -> str:
    """hardware.comm_backend, or for "auto" the family its accelerator uses."""
    backend = str(hardware.comm_backend)
    return AUTO_FAMILY.get(str(hardware.accelerator), "gloo") if backend == "auto" else backend


def library_name(hardware: Any) -> str:
    """The collective library a job on this hardware uses, as people call it."""
    backend = backend_family(hardware)
    if backend == "nccl":
        return "RCCL" if str(hardware.vendor) == "amd" else "NCCL"
    return {"hccl": "HCCL", "ccl": "oneCCL", "xccl": "oneCCL", "gloo": "gloo"}.get(backend, backend)


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Variables a profile's env may not set. Bash reads the first group when a shell starts or runs: BASH_ENV and
# ENV name a file it sources (after expanding the value, command substitution included), PS4 and
# PROMPT_COMMAND are expanded and run, SHELLOPTS/BASHOPTS switch options, IFS and CDPATH change how the job
# script's own lines split words and change directory. The second group are the job script's own variables
# and what torchrun and Slurm set for each step: a profile that set one would retarget the job.
SHELL_RESERVED = frozenset({"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS1", "PS2", "PS4", "PROMPT_COMMAND",
                            "IFS", "CDPATH", "GLOBIGNORE", "BASH_XTRACEFD", "EXECIGNORE", "HOSTFILE", "INPUTRC"})
SCRIPT_RESERVED = frozenset({"WORKDIR", "PYTHON", "RUN_DIR", "STATE_DIR", "NODES", "RANKS_PER_NODE",
                             "MAX_REQUEUES", "REQUEUE", "CONFIG", "CONFIGS", "MASTER_ADDR", "MASTER_PORT",
                             "HET_RANKS", "RANKS_BY_NODE", "WORLD_SIZE_OF_JOB", "JOB_HOSTS", "ATTEMPT", "JOB_KEY",
                             "LOG_DIR", "STOP_REQUESTED", "CHILD", "TRIGLOT_ERROR_FILE", "SHARDS",
                             "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                             # Slurm's output variables the script reads (its input ones, SLURM_CPU_BIND and
                             # the like, stay allowed: sites tune srun with them)
                             "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST",
                             "SLURM_JOB_NUM_NODES", "SLURM_NODEID", "SLURM_PROCID", "SLURM_CPUS_PER_TASK",
                             "SLURM_RESTART_COUNT", "SLURMD_NODENAME"})
RESERVED_PREFIXES = ("BASH_FUNC_", "PET_", "TORCHELASTIC_", "SLURM_JOB_NUM_NODES_HET_GROUP_",
                     "SLURM_JOB_NODELIST_HET_GROUP_")


def check_env_names(env: Any, where: str) -> None:
    """Refuse an env name that is not a shell name, or one bash, the job script or the launchers rely on."""
    for name in env:
        text = str(name)
        if not ENV_NAME.fullmatch(text):
            raise ConfigError(f"{where}.{text}: {text!r} is not a valid environment variable name (letters, "
                              "digits and _, not starting with a digit)")
        if text in SHELL_RESERVED:
            raise ConfigError(f"{where}.{text}: bash reads {text} when a job step starts (it can run the value as "
                              "code); remove it from the profile")
        if text in SCRIPT_RESERVED or text.startswith(RESERVED_PREFIXES):
            raise ConfigError(f"{where}.{text}: {text} is set by the job script, torchrun or Slurm and read by it; "
                              "remove it from the profile or use another name")


def comm_env(hardware: Any, cluster: Any, cpus_per_rank: int) -> dict[str, str]:
    """Variables a job exports: backend defaults < hardware profile env < cluster profile env."""
    check_env_names(hardware.env, "hardware.env")
    check_env_names(cluster.env, f"cluster profile '{cluster.name}' env")
    backend = backend_family(hardware)
    env = dict(BACKEND_ENV.get(backend, {}))
    if str(hardware.accelerator) == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, cpus_per_rank))
    if cluster.socket_ifname:
        for name in IFNAME_VARS.get(backend, ("GLOO_SOCKET_IFNAME",)):
            env[name] = str(cluster.socket_ifname)
    env.update({str(k): str(v) for k, v in hardware.env.items()})
    env.update({str(k): str(v) for k, v in cluster.env.items()})
    return env
