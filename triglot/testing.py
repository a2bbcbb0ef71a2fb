"""Helpers for tests that run real multi-process jobs: free ports, torchrun launches, synthetic packs.

`run_torchrun(nproc, args)` starts `python -m torch.distributed.run -m triglot ARGS` (or a script)
with a timeout and returns the finished process with its output.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_argv(nproc: int, args: Sequence[str], script: str | None = None, port: int | None = None,
                  launcher: str = "torch.distributed.run") -> list[str]:
    """Plain torchrun (what users type) on one node with `nproc` processes running `triglot ARGS` (or a script).

    A free port of its own per launch, so tests running at once do not meet in one rendezvous.
    """
    from triglot.launch.torchrun import torchrun_argv as build
    from triglot.launch.torchrun import triglot_target

    target = [script, *args] if script else triglot_target(args)
    return build(nproc, target, master_port=port or free_port(), launcher=launcher)


def test_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return {**env, **(extra or {})}


test_env.__test__ = False  # a helper, not a test, wherever a test module imports it


def run_torchrun(nproc: int, args: Sequence[str], script: str | None = None, timeout: float = 600,
                 env: dict[str, str] | None = None, check: bool = True,
                 cwd: str | os.PathLike = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run to completion; with `check`, a non-zero exit raises with the tail of the output."""
    proc = subprocess.run(torchrun_argv(nproc, args, script), cwd=cwd, env=test_env(env), timeout=timeout,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {' '.join(args)}\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc


def start_torchrun(nproc: int, args: Sequence[str], script: str | None = None, env: dict[str, str] | None = None,
                   cwd: str | os.PathLike = REPO_ROOT, log_path: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start in the background (own process group); output goes to `log_path` or is discarded."""
    out: Any = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(torchrun_argv(nproc, args, script), cwd=cwd, env=test_env(env), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def worker_pids(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the worker processes a torchrun process started (its direct children)."""
    import psutil

    pids = {}
    for child in psutil.Process(launcher_pid).children(recursive=False):
        try:
            rank = child.environ().get("RANK")
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if rank is not None:
            pids[int(rank)] = child.pid
    return pids


def write_synthetic_pack(folder: str | os.PathLike, vocab_size: int = 256, docs: int = 64, seed: int = 0,
                         languages: Sequence[str] = ("en", "zh-Hans", "yue"), min_len: int = 8,
                         max_len: int = 120, eos_id: int = 0) -> Path:
    """A packed folder of random documents (each ending with EOS), for tests that need no tokenizer."""
    from triglot.packed import ShardWriter, token_dtype, write_meta

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    dtype = token_dtype(vocab_size)
    writer = ShardWriter(folder, "shard-00000", dtype)
    for i in range(docs):
        length = int(rng.integers(min_len, max_len))
        body = rng.integers(1, vocab_size, size=length - 1)
        writer.add(np.append(body, eos_id), language=languages[i % len(languages)], source=f"src{i % 2}",
                   doc_id=f"doc{i}")
    write_meta(folder, dtype=dtype, vocab_size=vocab_size, eos_id=eos_id, shards=[writer.close()])
    return folder
