"""Failures: non-finite loss stops (or skips) with the step named, silent ranks are named, OOM advice."""

from __future__ import annotations

from pathlib import Path

import pytest
from triglot.train.checkpoint import commit, complete_checkpoints
from triglot.train.coordination import EXIT_NONFINITE, oom_message

from tests.train.conftest import read_metrics, write_experiment
from triglot.config import compose
from triglot.testing import run_torchrun

HERE = Path(__file__).parent


@pytest.mark.distributed
def test_nonfinite_loss_stops_naming_the_step(tmp_path, packed_dir):
    # A negative RMSNorm epsilon takes the square root of negative numbers: the first loss is NaN.
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, steps=4)
    proc = run_torchrun(2, ["train", str(exp), "model.rms_norm_eps=-1.0"], check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"exitcode  : {EXIT_NONFINITE}" in out
    assert "loss is nan at step 1" in out and "train.lr" in out
    assert not list((tmp_path / "run" / "checkpoints").glob("step-*"))


@pytest.mark.distributed
def test_nonfinite_loss_can_skip(tmp_path, packed_dir):
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, steps=3, on_nonfinite="skip",
                           checkpoint={"every": 10, "export_hf": False})
    run_torchrun(2, ["train", str(exp), "model.rms_norm_eps=-1.0"], timeout=300)
    metrics = read_metrics(tmp_path / "run")
    # Every loss is NaN: both ranks' micro-batches are dropped and no step updates the weights.
    assert [metrics[s]["skipped_batches"] for s in (1, 2, 3)] == [2, 2, 2]
    assert [metrics[s]["skipped_steps"] for s in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.distributed
@pytest.mark.parametrize("zero_stage", [2, 0])  # ZeRO-0: gradients reduced during backward (train/grad_reduce.py)
def test_skip_leaves_dropped_tokens_out_and_all_dropped_steps_change_nothing(tmp_path, packed_dir, zero_stage):
    # Two micro-batches per rank; the script poisons some of them (see nonfinite_step_script.py).
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, steps=3, on_nonfinite="skip",
                           micro_batch_size=2, warmup_steps=0, lr=1e-3, zero_stage=zero_stage, grad_bucket_mb=0.01)
    proc = run_torchrun(2, [str(exp)], script=str(HERE / "nonfinite_step_script.py"), timeout=300,
                        check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert out.count("NONFINITE CHECKS PASSED") == 2


@pytest.mark.distributed
def test_preflight_names_the_rank_that_did_not_answer():
    proc = run_torchrun(2, [], script=str(HERE / "preflight_script.py"), timeout=120)
    out = proc.stdout + proc.stderr
    assert "PREFLIGHT FAILED" in out and "1" in out.split("PREFLIGHT FAILED", 1)[1].splitlines()[0]


def test_partial_and_corrupt_checkpoints_are_skipped(tmp_path, caplog):
    for step in (2, 4, 6):
        folder = tmp_path / f"step-{step:08d}"
        (folder / "state").mkdir(parents=True)
        (folder / "state" / "model.pt").write_bytes(b"x" * 100)
        if step != 6:  # step 6 never got its marker (killed while writing)
            commit(folder, step)
    (tmp_path / "step-00000004" / "state" / "model.pt").write_bytes(b"x" * 10)  # truncated after commit
    with caplog.at_level("WARNING"):
        assert [s for s, _ in complete_checkpoints(tmp_path)] == [2]
    assert "step-00000006" in caplog.text and "partial" in caplog.text
    assert "step-00000004" in caplog.text and "truncated" in caplog.text


def test_out_of_memory_message_suggests_settings():
    import torch

    cfg = compose({"train": {"zero_stage": 1}})
    msg = oom_message(7, cfg, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "step 7" in msg and "train.micro_batch_size" in msg and "train.zero_stage" in msg
    assert "hardware.activation_checkpointing" in msg
