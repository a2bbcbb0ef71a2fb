"""ZeRO's weight all-gather on gloo as one broadcast per rank (train/collectives.py) changes no number."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import write_experiment
from triglot.testing import run_torchrun

HERE = Path(__file__).parent


@pytest.mark.distributed
def test_broadcast_all_gather_matches_gloos_own(tmp_path, packed_dir):
    exp = write_experiment(tmp_path / "exp.yaml", tmp_path / "run", packed_dir, warmup_steps=0)
    proc = run_torchrun(2, [str(exp)], script=str(HERE / "gloo_all_gather_script.py"), timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert out.count("GLOO ALL-GATHER CHECKS PASSED") == 2, out[-6000:]
