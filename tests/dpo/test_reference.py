"""The DPO loss and its gradients on two ranks equal a plain PyTorch DPO on the same pairs, to 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dpo.conftest import write_run
from triglot.testing import run_torchrun

pytestmark = [pytest.mark.distributed]
SCRIPT = str(Path(__file__).with_name("reference_script.py"))


def test_loss_and_gradients_equal_plain_dpo_on_two_ranks(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Unequal micro-batches (1 and 3 rows, each with a different number of pairs): only a global pair
    # count makes the gradient that of the mean over the whole batch. ZeRO-0 leaves reduced gradients whole.
    config = write_run(tmp_path / "run", tiny_model_dir, steps=2, zero=0, label_smoothing=0.1)
    out = tmp_path / "result.json"
    run_torchrun(2, [str(config), str(out), "train.micro_batch_sizes=[1,3]"], script=SCRIPT, timeout=600)
    result = json.loads(out.read_text())
    pairs = result["pairs_per_rank"]
    assert pairs[0] != pairs[1] and result["pairs"] == sum(pairs)
    assert result["loss"] == pytest.approx(result["plain_loss"], abs=1e-5)
    assert abs(result["loss"] - 0.6931) > 1e-3  # the policy has moved off the reference
    assert result["max_grad"] > 1e-3 and result["max_grad_diff"] < 1e-5, result
