"""A checkpoint that does not fit on its disk ends the run with one line (checkpoint, bytes needed, bytes
free) and exit code 74, whether the disk fills during the save or the free-space check sees it coming.

The checkpoint folder lives on a small tmpfs; the test is skipped where mounting one is not possible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from triglot.train.checkpoint import checkpoint_bytes
from triglot.train.coordination import EXIT_DISK_FULL

from tests.train.conftest import write_experiment
from triglot.testing import run_torchrun

pytestmark = pytest.mark.distributed
SETTINGS = {"checkpoint": {"every": 2, "export_hf": False, "keep_last": 3}}


@contextmanager
def small_disk(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted at `path` (needs root)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _train(tmp_path: Path, name: str, packed_dir: Path, ckpt_dir: Path, steps: int) -> subprocess.CompletedProcess:
    exp = write_experiment(tmp_path / f"{name}.yaml", tmp_path / name, packed_dir, steps=steps, **SETTINGS)
    return run_torchrun(2, ["train", str(exp), f"train.checkpoint.dir={ckpt_dir}"], timeout=400, check=False)


def _assert_one_line_disk_full(proc: subprocess.CompletedProcess, folder: Path, when: str,
                               needed: int | None = None) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"exitcode  : {EXIT_DISK_FULL}" in out, out[-3000:]
    lines = [line for line in out.splitlines() if "no space left to save checkpoint" in line]
    assert lines and all(f"{folder} ({when})" in line and "bytes are free" in line for line in lines), out[-3000:]
    if needed is not None:
        assert all(f"needs about {needed} bytes" in line for line in lines)
    # No traceback from inside torch.save or DeepSpeed on any rank (torchrun's own summary may remain).
    assert "torch/serialization.py" not in out and "deepspeed/runtime" not in out, out[-3000:]
    assert out.count("Traceback") <= 1, out[-3000:]


def test_disk_full_ends_with_one_line_and_its_exit_code(tmp_path: Path, packed_dir: Path) -> None:
    proc = _train(tmp_path, "measure", packed_dir, tmp_path / "measure-ckpt", steps=2)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    size = checkpoint_bytes(tmp_path / "measure-ckpt" / "step-00000002")
    assert size > 0

    # The disk fills while the first checkpoint is written.
    with small_disk(tmp_path / "half", size // 2) as disk:
        proc = _train(tmp_path, "half", packed_dir, disk, steps=2)
        _assert_one_line_disk_full(proc, disk / "step-00000002", "the disk filled while writing")
        assert not list(disk.glob(".tmp-step-*"))  # the partial save gave its space back

    # Room for one more checkpoint's worth is checked before saving: step 4 does not fit beside step 2.
    with small_disk(tmp_path / "one", size + size // 2) as disk:
        shutil.copytree(tmp_path / "measure-ckpt", disk, dirs_exist_ok=True)
        (disk / ".tmp-step-00000003" / "state").mkdir(parents=True)  # left by a killed save
        proc = _train(tmp_path, "one", packed_dir, disk, steps=4)
        _assert_one_line_disk_full(proc, disk / "step-00000004", "checked before writing", needed=size)
        assert not (disk / ".tmp-step-00000003").exists() and not (disk / "step-00000004").exists()
