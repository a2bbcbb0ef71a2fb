"""DeepSpeed's CPU op builds inside the environment, and a lock left by a killed build does not hang runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from triglot.ops import SHM_OP, clear_stale_locks, extensions_dir
from triglot.testing import test_env

LOAD_OP = """
from triglot.hardware import get_accelerator
get_accelerator()
from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder
ShareMemCommBuilder().load(verbose=False)
print("op loaded")
"""


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_only_locks_without_a_builder_are_cleared(tmp_path: Path) -> None:
    stale, young, building = (tmp_path / "a" / "lock", tmp_path / "py311_cpu" / "b" / "lock",
                              tmp_path / "c" / "lock")
    for lock in (stale, young, building):
        lock.parent.mkdir(parents=True)
        lock.write_text("")
    _age(stale, 3600)
    _age(building, 3600)
    builder = subprocess.Popen(["sleep", "60"], cwd=building.parent)  # a compiler at work in its folder
    try:
        assert clear_stale_locks(tmp_path) == [stale]
    finally:
        builder.kill()
        builder.wait()
    assert not stale.exists() and young.exists() and building.exists()


def test_extensions_live_in_the_environment_per_host(monkeypatch) -> None:
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert extensions_dir() == Path(sys.prefix) / "torch_extensions" / socket.gethostname()


def test_a_killed_build_leaves_no_lock_that_hangs_the_next_run(tmp_path: Path) -> None:
    root = tmp_path / "ext"
    built = extensions_dir() / SHM_OP
    if (built / f"{SHM_OP}.so").is_file():  # reuse this environment's build: no minute-long compile
        shutil.copytree(built, root / SHM_OP, symlinks=True)
    (root / SHM_OP).mkdir(parents=True, exist_ok=True)
    lock = root / SHM_OP / "lock"
    lock.write_text("")
    _age(lock, 3600)  # what a build killed an hour ago leaves
    proc = subprocess.run([sys.executable, "-c", LOAD_OP], env=test_env({"TORCH_EXTENSIONS_DIR": str(root)}),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "op loaded" in proc.stdout, proc.stderr[-3000:]
    assert "stale build lock" in proc.stderr
    if not (built / f"{SHM_OP}.so").is_file():  # keep the build for the runs after this one
        shutil.copytree(root / SHM_OP, built, ignore=shutil.ignore_patterns("lock"), dirs_exist_ok=True)
