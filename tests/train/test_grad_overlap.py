"""The gradient all-reduce overlapped with backward (train/grad_reduce.py) changes no number, ZeRO-0 to 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import write_experiment
from triglot.testing import run_torchrun

HERE = Path(__file__).parent


@pytest.mark.distributed
def test_overlapped_all_reduce_matches_deepspeeds_bit_for_bit(tmp_path, packed_dir):
    # Two micro-batches per rank (one accumulates); buckets of about 10 kB split the tiny model into several.
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, zero_stage=0, micro_batch_size=2,
                           grad_bucket_mb=0.01, warmup_steps=0)
    proc = run_torchrun(2, [str(exp)], script=str(HERE / "grad_overlap_script.py"), timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert out.count("GRAD OVERLAP CHECKS PASSED") == 2, out[-6000:]
