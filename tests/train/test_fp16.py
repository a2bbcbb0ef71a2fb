"""fp16 with dynamic loss scaling, for real on CPU (DeepSpeed runs fp16 where oneDNN supports it).

An overflowed step is skipped and the scale lowered, and training goes on; too many overflows in a
row, or an overflow at the minimum scale, stop the run with exit code 3.
"""

from __future__ import annotations

import math

import pytest

from tests.train.conftest import read_metrics, write_experiment
from triglot.testing import run_torchrun

pytestmark = pytest.mark.distributed

# 2**24 overflows this model's fp16 gradients: DeepSpeed halves the scale until they fit.
FP16 = ["hardware.precision=fp16", "hardware.initial_scale_power=24"]


def _fp16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


needs_fp16 = pytest.mark.skipif(not _fp16_supported(), reason="this CPU has no fp16 support in oneDNN")


def _train(tmp_path, packed_dir, *overrides: str, steps: int = 8):
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, steps=steps,
                           checkpoint={"every": 100, "export_hf": False})
    proc = run_torchrun(2, ["train", str(exp), *FP16, *overrides], check=False, timeout=300)
    return proc, proc.stdout + proc.stderr


@needs_fp16
def test_overflowed_steps_are_skipped_counted_and_the_scale_falls(tmp_path, packed_dir):
    proc, out = _train(tmp_path, packed_dir)
    assert proc.returncode == 0, out[-6000:]
    metrics = read_metrics(tmp_path / "run")
    skipped = [metrics[s]["skipped_steps"] for s in sorted(metrics)]
    scales = [metrics[s]["loss_scale"] for s in sorted(metrics)]
    assert skipped[0] == 1 and not math.isfinite(metrics[1]["grad_norm"])  # step 1 overflowed
    assert skipped == sorted(skipped) and 1 < skipped[-1] < len(skipped)  # later steps were applied
    assert scales[-1] < scales[0] == 2.0**24
    assert math.isfinite(metrics[max(metrics)]["grad_norm"]) and skipped[-1] == skipped[-2]
    assert "fp16 overflow at step 1" in out


@needs_fp16
def test_too_many_overflows_in_a_row_stop_the_run(tmp_path, packed_dir):
    proc, out = _train(tmp_path, packed_dir, "train.max_overflow_steps=3")
    assert proc.returncode != 0 and "exitcode  : 3" in out
    assert "3 fp16 overflows in a row" in out and "at step 3" in out and "train.max_overflow_steps" in out


@needs_fp16
def test_nonfinite_loss_at_the_minimum_scale_stops_the_run(tmp_path, packed_dir):
    # Every loss is NaN. Scale 4: step 1 uses up DeepSpeed's hysteresis, steps 2 and 3 halve the
    # scale to the minimum (1), and step 4 can go no lower.
    proc, out = _train(tmp_path, packed_dir, "model.rms_norm_eps=-1.0", "hardware.initial_scale_power=2")
    assert proc.returncode != 0 and "exitcode  : 3" in out
    assert "loss at the minimum fp16 loss scale 1 is nan at step 4" in out
