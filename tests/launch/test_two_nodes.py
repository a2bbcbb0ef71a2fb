"""Two-node rendezvous on one machine: two launchers with --nnodes 2, node ranks 0 and 1, train together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from triglot import testing

pytestmark = pytest.mark.distributed


def test_two_launchers_train_together(packed_dir: Path, tmp_path: Path, helpers) -> None:
    run_dir = tmp_path / "run"
    port = testing.free_port()
    base = [sys.executable, "-m", "triglot", "launch", "local", "train", "configs/experiments/quickstart.yaml",
            *helpers.tiny_overrides(run_dir, packed_dir, steps=4), "train.log_samples=true"]
    nodes = [subprocess.Popen([*base, "--nproc", "1", "--nnodes", "2", "--node-rank", str(rank),
                               "--master-port", str(port)], env=testing.test_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert (run_dir / "checkpoints" / "step-00000004" / "COMPLETE").is_file()
    # Both nodes' ranks consumed their halves of every global batch.
    files = sorted((run_dir / "checkpoints" / "samples").glob("rank*.jsonl"))
    assert [f.name for f in files] == ["rank00000.jsonl", "rank00001.jsonl"]
    seen = [i for f in files for line in f.read_text().splitlines() for i in json.loads(line)["indices"]]
    assert sorted(seen) == list(range(4 * 8))
