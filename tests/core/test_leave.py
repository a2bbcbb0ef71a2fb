"""A rank leaves without interpreter teardown, but only after what teardown would have done."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from triglot.testing import REPO_ROOT

PROGRAM = textwrap.dedent("""
    import atexit, os, sys, tempfile, threading, time
    import torch.distributed
    from triglot.dist import leave

    folder = tempfile.TemporaryDirectory()  # removed by its finaliser at exit
    print(folder.name)
    atexit.register(lambda: print("atexit ran"))
    def late():
        time.sleep(0.5)
        print("thread finished")
    threading.Thread(target=late).start()
    print("unflushed", end="")
    sys.stderr.write("to stderr")
    leave(int(sys.argv[1]))
""")


def run_program(code: int, world: bool) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    if world:
        env["WORLD_SIZE"] = "2"
    return subprocess.run([sys.executable, "-c", PROGRAM, str(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_rank_leaves_with_its_code_after_threads_atexit_and_flush() -> None:
    for code in (0, 3):
        proc = run_program(code, world=True)
        assert proc.returncode == code, proc.stderr
        folder, *rest = proc.stdout.splitlines()
        # The thread was joined before the atexit handlers ran, and nothing buffered was lost.
        assert rest == ["unflushedthread finished", "atexit ran"], proc.stdout
        assert proc.stderr.endswith("to stderr")
        assert not Path(folder).exists(), "the temporary folder's finaliser did not run"


def test_outside_a_distributed_job_it_is_a_plain_exit() -> None:
    proc = run_program(5, world=False)
    assert proc.returncode == 5 and "thread finished" in proc.stdout and "atexit ran" in proc.stdout
