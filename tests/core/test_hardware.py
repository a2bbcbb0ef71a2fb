"""Every hardware profile loads and is coherent; detection on this machine picks the CPU profile."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from triglot.config import compose
from triglot.hardware import detect, peak_flops, profile_for

PROFILES = ["cpu", "nvidia-v100", "nvidia-a100", "nvidia-h100", "nvidia-h200", "amd-mi250x", "amd-mi300x",
            "ascend-910b", "intel-gaudi2", "intel-xpu"]
BACKENDS = {"gloo", "nccl", "hccl", "ccl", "xccl", "auto"}
ACCELERATORS = {"cpu", "cuda", "npu", "hpu", "xpu"}


def test_profile_set_is_complete(repo_root: Path) -> None:
    shipped = sorted(p.stem for p in (repo_root / "configs" / "hardware").glob("*.yaml"))
    assert shipped == sorted(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_loads_and_is_coherent(name: str, repo_root: Path) -> None:
    hw = compose({"defaults": {"hardware": name}}).hardware
    assert hw.name == name
    assert hw.accelerator in ACCELERATORS
    assert hw.comm_backend in BACKENDS
    # the profile's training precision has a datasheet peak, so MFU can be computed
    assert peak_flops(hw) > 0
    assert hw.micro_batch_size >= 1
    text = (repo_root / "configs" / "hardware" / f"{name}.yaml").read_text()
    if name != "cpu":
        assert "Source:" in text or "product brief" in text, f"{name} must cite its datasheet"
        assert not hw.tested
    if hw.precision.value == "bf16":
        assert "bf16" in hw.peak_tflops


def test_detection_on_this_machine() -> None:
    device = detect()
    assert device.accelerator == "cpu"
    assert device.profile == "cpu"
    hw = compose({"defaults": {"hardware": "auto"}}).hardware
    assert hw.name == "cpu" and hw.precision.value == "fp32" and hw.comm_backend == "gloo"


@pytest.mark.parametrize(
    ("accelerator", "product", "profile"),
    [
        ("cuda", "NVIDIA H200", "nvidia-h200"),
        ("cuda", "NVIDIA H100 80GB HBM3", "nvidia-h100"),
        ("cuda", "NVIDIA A100-SXM4-80GB", "nvidia-a100"),
        ("cuda", "Tesla V100-SXM2-32GB", "nvidia-v100"),
        ("cuda", "AMD Instinct MI300X", "amd-mi300x"),
        ("cuda", "AMD Instinct MI250X", "amd-mi250x"),
        ("npu", "Ascend910B", "ascend-910b"),
        ("hpu", "GAUDI2", "intel-gaudi2"),
        ("xpu", "Intel(R) Data Center GPU Max 1550", "intel-xpu"),
    ],
)
def test_product_names_map_to_profiles(accelerator: str, product: str, profile: str) -> None:
    assert profile_for(accelerator, product) == (profile, "")


def test_unknown_gpu_falls_back_with_a_note() -> None:
    profile, note = profile_for("cuda", "NVIDIA L40S")
    assert profile == "nvidia-a100" and "hardware=NAME" in note


def test_cli_hardware_names_cpu_profile() -> None:
    out = subprocess.run([sys.executable, "-m", "triglot", "hardware"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "profile:     cpu" in out.stdout
    assert "fp32" in out.stdout and "gloo" in out.stdout


def test_no_torch_cuda_outside_hardware_layer(repo_root: Path) -> None:
    offenders = []
    for package in ("train", "data_pipeline", "tokenizer", "launch", "eval", "triglot"):
        for path in (repo_root / package).rglob("*.py"):
            if path.name == "hardware.py" and path.parent.name == "triglot":
                continue
            if "torch.cuda" in path.read_text(encoding="utf-8"):
                offenders.append(str(path.relative_to(repo_root)))
    assert offenders == []


ALLOCATOR_PROBE = """
import ctypes, sys
from triglot.hardware import tune_host_allocator
applied = tune_host_allocator() if sys.argv[1] == "tuned" else False
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 16 << 20  # a step-sized buffer: activations or a gradient bucket
before = libc.mallinfo2().hblks
block = libc.malloc(size)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(applied, mapped, int(libc.mallinfo2().fordblks >= size))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc allocator settings")
def test_tuned_allocator_keeps_step_buffers_in_the_heap() -> None:
    """After tuning, a step-sized block comes from the heap and stays there once freed, so the next step
    reuses its pages instead of mapping and faulting them in again. Allocator state, not timing or load."""
    def probe(mode: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE, mode], capture_output=True, text=True,
                              check=True).stdout.split()

    assert probe("tuned") == ["True", "0", "1"]
    # glibc's defaults map a block this large on its own and unmap it on free: the case tuning prevents.
    assert probe("default") == ["False", "1", "0"]
