"""Communication settings per collective library (NCCL, RCCL, HCCL, oneCCL, gloo) for generated job scripts.

The hardware profile's `env` and then the cluster profile's `env` are laid over these defaults.
"""

from __future__ import annotations

from typing import Any

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


def comm_env(hardware: Any, cluster: Any, cpus_per_rank: int) -> dict[str, str]:
    """Variables a job exports: backend defaults < hardware profile env < cluster profile env."""
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
