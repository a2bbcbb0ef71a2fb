"""Loss normalisation: one optimizer step gives the same parameters however the global batch is split."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import read_metrics, write_experiment
from triglot.testing import run_torchrun

pytestmark = pytest.mark.distributed

SPLITS = {
    "1x8": (1, {"micro_batch_size": 8}),
    "2x4": (2, {"micro_batch_size": 4}),
    "2x2x2": (2, {"micro_batch_size": 2}),
    "2x[3,5]": (2, {"micro_batch_sizes": [3, 5]}),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_one_step_is_identical_across_batch_splits(tmp_path, packed_dir):
    results = {}
    for name, (nproc, train) in SPLITS.items():
        run = tmp_path / name.replace("[", "").replace("]", "").replace(",", "-")
        exp = write_experiment(tmp_path / f"{run.name}.yaml", run, packed_dir, steps=1, zero_stage=2,
                               warmup_steps=0, lr=1e-3, **train)
        run_torchrun(nproc, ["train", str(exp)], timeout=300)
        results[name] = (load_file(run / "export" / "model.safetensors"), read_metrics(run)[1])
    ref_params, ref_metrics = results["1x8"]
    # Summation order differs between splits; fp32 rounding of the gradient stays far below 1e-6.
    for name, (params, metrics) in results.items():
        # Grad norm and loss scale with the normaliser, so a wrong one shows here even though
        # AdamW's first update is nearly sign(gradient).
        assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-6), name
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-6), name
        assert metrics["target_tokens"] == ref_metrics["target_tokens"]
        for key, ref in ref_params.items():
            assert _rel(params[key], ref) <= 1e-6, (name, key)
