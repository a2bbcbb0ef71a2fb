"""The hardware layer: device detection, profile selection and the few device calls stages need.

Only this module talks to device-specific APIs (through DeepSpeed's accelerator abstraction, and
`torch.cuda` only to read a GPU's product name); every other module asks it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

# Substrings of a device's product name, most specific first, mapped to a profile in configs/hardware/.
GPU_PROFILES: tuple[tuple[str, str], ...] = (
    ("H200", "nvidia-h200"),
    ("H100", "nvidia-h100"),
    ("A100", "nvidia-a100"),
    ("V100", "nvidia-v100"),
    ("MI300", "amd-mi300x"),
    ("MI250", "amd-mi250x"),
)
# DeepSpeed accelerator name -> profile, for families that do not need a product-name lookup.
ACCELERATOR_PROFILES = {"cpu": "cpu", "npu": "ascend-910b", "hpu": "intel-gaudi2", "xpu": "intel-xpu"}


@dataclass(frozen=True)
class DetectedDevice:
    accelerator: str  # DeepSpeed accelerator name: cpu, cuda, npu, hpu, xpu
    product: str  # human-readable name of the device
    count: int
    profile: str  # profile in configs/hardware/ chosen for it
    note: str = ""


@lru_cache(maxsize=1)
def get_accelerator() -> Any:
    """DeepSpeed's accelerator for this process (honours DS_ACCELERATOR)."""
    if "DS_ACCELERATOR" not in os.environ and _cpu_only():
        # Saves DeepSpeed's probing and its fallback warning on stdout; child processes inherit it.
        os.environ["DS_ACCELERATOR"] = "cpu"
    from deepspeed.accelerator import get_accelerator as ds_get_accelerator

    accelerator = ds_get_accelerator()
    if accelerator.device_name() == "cpu":
        from triglot.ops import prepare_op_builds

        prepare_op_builds()
    return accelerator


def _cpu_only() -> bool:
    """No accelerator runtime present: no vendor extension installed and no CUDA/ROCm device."""
    import importlib.util

    import torch

    vendor_modules = ("torch_npu", "habana_frameworks", "intel_extension_for_pytorch")
    if any(importlib.util.find_spec(m) is not None for m in vendor_modules):
        return False
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return False
    return not torch.cuda.is_available()


def _product_name(accel: Any) -> str:
    name = accel.device_name()
    if name == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    if name == "cpu":
        return _cpu_model()
    return name


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_for(accelerator: str, product: str) -> tuple[str, str]:
    """Profile name for a device and a note when the choice is a fallback."""
    if accelerator in ACCELERATOR_PROFILES:
        return ACCELERATOR_PROFILES[accelerator], ""
    for needle, profile in GPU_PROFILES:
        if needle.lower() in product.lower():
            return profile, ""
    fallback = "amd-mi250x" if "amd" in product.lower() or "instinct" in product.lower() else "nvidia-a100"
    return fallback, f"no profile matches '{product}'; using {fallback} (set hardware=NAME to choose)"


@lru_cache(maxsize=1)
def detect() -> DetectedDevice:
    accel = get_accelerator()
    name = accel.device_name()
    product = _product_name(accel)
    count = accel.device_count() if name != "cpu" else (os.cpu_count() or 1)
    profile, note = profile_for(name, product)
    return DetectedDevice(accelerator=name, product=product, count=count, profile=profile, note=note)


def detect_profile_name() -> str:
    device = detect()
    if device.note:
        log.warning(device.note)
    return device.profile


# ---- device calls for the stages -------------------------------------------------------------


def device_for(local_rank: int) -> Any:
    """torch.device for this rank's accelerator, after making it current."""
    import torch

    accel = get_accelerator()
    if accel.device_name() == "cpu":
        return torch.device("cpu")
    accel.set_device(local_rank)
    return torch.device(accel.device_name(), local_rank)


def synchronize() -> None:
    get_accelerator().synchronize()


def peak_memory_bytes() -> int:
    """Peak device memory of this process, or host RSS on CPU."""
    accel = get_accelerator()
    if accel.device_name() == "cpu":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return int(accel.max_memory_allocated())


def reset_peak_memory() -> None:
    accel = get_accelerator()
    if accel.device_name() != "cpu":
        accel.reset_peak_memory_stats()


def empty_cache() -> None:
    get_accelerator().empty_cache()


def peak_flops(hardware: Any) -> float:
    """Dense peak FLOP/s per device at the profile's precision (0 when the profile has none)."""
    precision = str(getattr(hardware.precision, "value", hardware.precision))
    return float(hardware.peak_tflops.get(precision, 0.0)) * 1e12


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_host_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the kernel (glibc only).

    By default glibc maps large blocks afresh and trims the heap's top, so every training step on a CPU
    rank faults the same activations and gradient buffers in again, page by page: about 100,000 page
    faults a second and a fifth of a tiny model's step spent in the kernel. With blocks up to 32 MiB
    from the heap and no trimming below 1 GiB, a step reuses the last step's pages. Returns whether it
    applied (False on other C libraries).
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
    log.debug("host allocator tuned: %s", applied)
    return applied
