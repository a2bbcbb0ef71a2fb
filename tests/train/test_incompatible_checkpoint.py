"""A run folder whose checkpoints were written for another model (shape, vocabulary, ZeRO stage) is refused
before DeepSpeed loads a shard: exit 2 and one line naming what differs and the two ways out (a new run.dir,
or train.checkpoint.resume=false).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from triglot.train import checkpoint as ckpt

from tests.train.conftest import write_experiment
from triglot import testing
from triglot.testing import REPO_ROOT, run_torchrun

pytestmark = pytest.mark.distributed

WAYS_OUT = ("new run.dir", "train.checkpoint.resume=false")


def launch_local(exp: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", "launch", "local", "train", str(exp), "--nproc", "2",
                           *overrides], cwd=REPO_ROOT, env=testing.test_env(), capture_output=True, text=True, timeout=600)


def refusal(proc: subprocess.CompletedProcess) -> str:
    """The one line of the refusal; nothing of DeepSpeed's load (its `size mismatch` wall) around it."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    lines = [line for line in out.splitlines() if "cannot be resumed by this run" in line]
    assert len(lines) == 1, out[-4000:]
    assert "size mismatch" not in out and "Traceback" not in out, out[-4000:]
    assert all(way in lines[0] for way in WAYS_OUT), lines[0]
    return lines[0]


def test_another_model_shape_or_vocabulary_is_refused_with_one_line(tmp_path: Path, packed_dir: Path) -> None:
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "exp.yaml", run, packed_dir, steps=2,
                           checkpoint={"every": 2, "export_hf": False})
    run_torchrun(2, ["train", str(exp)], timeout=600)
    line = refusal(launch_local(exp, "model.hidden_size=64", "train.steps=4"))
    assert line.startswith("triglot: config error: checkpoint "), line
    assert "model.hidden_size 32 -> 64" in line and "num_layers" not in line, line

    line = refusal(launch_local(exp, "model.vocab_size=256", "train.steps=4"))
    assert "vocabulary 128 -> 256 tokens" in line and "hidden_size" not in line, line

    # ZeRO-1 and -2 share a shard format (2 -> 1 resumes); ZeRO-0 keeps the optimizer whole.
    line = refusal(launch_local(exp, "train.zero_stage=0", "train.steps=4"))
    assert "train.zero_stage 2 -> 0" in line and "model." not in line, line

    # A checkpoint from before meta.json recorded the parameters: judged by the keys of its config.yaml.
    meta_file = run / "checkpoints" / "step-00000002" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: meta[k] for k in ("step", "world_size", "zero_stage", "global_batch_size")}))
    ckpt.commit(meta_file.parent, 2)  # a marker whose checksums match again
    line = refusal(launch_local(exp, "model.num_layers=3", "train.steps=4"))
    assert "model.num_layers 2 -> 3" in line, line
