"""Hardware profiles' communication backends and peak figures: "auto" resolves as DeepSpeed does, MI250X per GCD.

The XPU resolution runs DeepSpeed's real XPU accelerator class in a fresh interpreter (it needs no XPU to be
built), once as installed here and once with a stand-in oneccl_bindings_for_pytorch module on the path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from triglot.launch.clusters import load_cluster
from triglot.launch.comm import comm_env, library_name

from triglot.config import compose
from triglot.hardware import peak_flops
from triglot.testing import REPO_ROOT
from triglot.testing import test_env as testing_env

RESOLVE = """
from deepspeed.accelerator.xpu_accelerator import XPU_Accelerator
from triglot.config import compose
from triglot.dist import comm_backend
accelerator = XPU_Accelerator()
hardware = compose({"defaults": {"hardware": "intel-xpu"}}).hardware
print(comm_backend(hardware, accelerator), accelerator.communication_backend_name())
"""


def resolve_xpu_backend(extra_path: str = "") -> list[str]:
    env = testing_env({"PYTHONPATH": f"{extra_path}:{REPO_ROOT}" if extra_path else str(REPO_ROOT)})
    proc = subprocess.run([sys.executable, "-c", RESOLVE], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()[-2:]


def test_xpu_profile_leaves_the_backend_to_the_accelerator() -> None:
    hardware = compose({"defaults": {"hardware": "intel-xpu"}}).hardware
    assert hardware.comm_backend == "auto"
    assert library_name(hardware) == "oneCCL"
    assert comm_env(hardware, load_cluster("local"), 1)["CCL_PROCESS_LAUNCHER"] == "none"


def test_auto_is_xccl_without_torch_ccl() -> None:
    assert resolve_xpu_backend() == ["xccl", "xccl"]


def test_auto_is_ccl_with_torch_ccl(tmp_path: Path) -> None:
    (tmp_path / "oneccl_bindings_for_pytorch.py").write_text('"""Stand-in: importable, as when installed."""\n')
    assert resolve_xpu_backend(str(tmp_path)) == ["ccl", "ccl"]


def test_a_named_backend_is_used_as_given() -> None:
    from triglot.dist import comm_backend

    assert comm_backend(compose({"defaults": {"hardware": "nvidia-h100"}}).hardware) == "nccl"
    assert comm_backend(compose({"defaults": {"hardware": "cpu"}}).hardware) == "gloo"


@pytest.mark.parametrize("precision, per_gcd", [("bf16", 191.5), ("fp16", 191.5), ("fp32", 47.85)])
def test_mi250x_figures_are_per_gcd(precision: str, per_gcd: float) -> None:
    """torch sees 8 devices on a node of 4 MI250X packages; MFU divides by devices, so peaks are per GCD."""
    hardware = compose({"defaults": {"hardware": "amd-mi250x"}}, [f"hardware.precision={precision}"]).hardware
    assert hardware.devices_per_node == 8
    assert peak_flops(hardware) == pytest.approx(per_gcd * 1e12)
    text = (REPO_ROOT / "configs" / "hardware" / "amd-mi250x.yaml").read_text()
    assert "per GCD" in text and "383" in text
