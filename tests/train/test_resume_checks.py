"""What resume trusts: checksums over sizes, the layout recorded in meta.json (ZeRO-3 included), the same
global batch, and the `resumed_from` record the resume tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.conftest import write_experiment
from tests.train.resume_check import assert_resumed_from
from triglot.testing import run_torchrun

pytestmark = pytest.mark.distributed


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_zero3_resume_skips_a_damaged_final_checkpoint(tmp_path: Path, packed_dir: Path) -> None:
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "exp.yaml", run, packed_dir, steps=4, zero_stage=3,
                           checkpoint={"every": 2, "export_hf": False})
    run_torchrun(2, ["train", str(exp)], timeout=400)
    ckpts = run / "checkpoints"
    meta = json.loads((ckpts / "step-00000004" / "meta.json").read_text())
    assert {k: meta[k] for k in ("step", "world_size", "zero_stage", "global_batch_size", "vocab_size")} == {
        "step": 4, "world_size": 2, "zero_stage": 3, "global_batch_size": 8, "vocab_size": 128}
    assert len(meta["parameters"]) == 16  # the digest of every (unsharded) parameter's name and shape
    shard = sorted((ckpts / "step-00000004" / "state").glob("*optim_states.pt"))[-1]
    _flip_one_byte(shard)  # same size: invisible to a size check
    # The same config again: the finished stage is no longer current, and resume skips the damaged step 4.
    proc = run_torchrun(2, ["train", str(exp)], timeout=400)
    out = proc.stdout + proc.stderr
    assert f"state/{shard.name} does not match its checksum" in out
    assert_resumed_from(ckpts / "metrics.jsonl", 2, 4)
    # ZeRO-3 shards are read as the same layout: no universal conversion (which would also skip the RNG).
    assert not (ckpts / "step-00000002" / "universal").exists()
    proc = run_torchrun(2, ["train", str(exp), "train.global_batch_size=16"], timeout=400, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "train.global_batch_size is 16" in out and "written with 8" in out
    assert "train.checkpoint.resume=false" in out


def test_resume_check_fails_when_resume_is_disabled(tmp_path: Path, packed_dir: Path) -> None:
    run = tmp_path / "run"
    settings = {"checkpoint": {"every": 2, "export_hf": False}}
    run_torchrun(2, ["train", str(write_experiment(tmp_path / "a.yaml", run, packed_dir, steps=2, **settings))])
    exp = write_experiment(tmp_path / "b.yaml", run, packed_dir, steps=4, **settings)
    run_torchrun(2, ["train", str(exp), "train.checkpoint.resume=false"])
    with pytest.raises(AssertionError, match="started again from step 0"):
        assert_resumed_from(run / "checkpoints" / "metrics.jsonl", 2, 4)
