"""train.micro_batch_sizes=auto: the split levels the ranks' predicted times, calibration leaves no trace, and
two ranks train to the same parameters as with the same fixed split (and the equal one); resume reuses the split."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from triglot.train.balance import (
    COSTS_VAR,
    CostFit,
    RankHardware,
    check_uniform,
    fit_costs,
    split_batch,
    time_micro_steps,
)
from triglot.train.data import collate

from tests.train.conftest import read_metrics, write_experiment
from triglot.errors import ConfigError
from triglot.testing import run_torchrun


def test_split_levels_predicted_times_within_caps() -> None:
    fits = [CostFit(0.0, 1.0), CostFit(0.0, 3.0)]
    assert split_batch(4, fits, [99, 99]) == [3, 1]
    assert split_batch(8, fits, [99, 99]) == [6, 2]
    assert split_batch(8, fits, [5, 99]) == [5, 3]  # rank 0's memory holds 5
    assert split_batch(2, [CostFit(0, 1), CostFit(0, 1000)], [99, 99]) == [1, 1]  # everyone gets one
    # A large fixed cost on rank 0 (e.g. a slow launch per micro-step) shifts sequences to rank 1.
    assert split_batch(6, [CostFit(2.0, 1.0), CostFit(0.0, 1.0)], [99, 99]) == [2, 4]
    with pytest.raises(ConfigError, match="global_batch_size"):
        split_batch(1, fits, [99, 99])
    with pytest.raises(ConfigError, match="memory"):
        split_batch(8, fits, [2, 2])


def test_fit_through_two_sizes() -> None:
    fit = fit_costs((1, 2), (0.3, 0.5))
    assert fit.intercept == pytest.approx(0.1) and fit.per_sequence == pytest.approx(0.2)


def test_ranks_that_disagree_on_precision_are_named() -> None:
    def rank(r: int, precision: str, profile: str) -> RankHardware:
        return RankHardware(r, "x", profile, 1, precision, "gloo", 1.0, 0.0)

    check_uniform([rank(0, "fp32", "cpu"), rank(1, "fp32", "cpu")])
    with pytest.raises(ConfigError, match=r"hardware.precision: fp32 on rank\(s\) 0, 2 \(cpu\); bf16 on rank\(s\) 1"):
        check_uniform([rank(0, "fp32", "cpu"), rank(1, "bf16", "nvidia-h100"), rank(2, "fp32", "cpu")])


def test_calibration_leaves_rng_gradients_and_weights_as_they_were(packed_dir) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM
    from triglot.train.data import MixtureSampler, split_documents

    from triglot.packed import PackedDataset

    torch.manual_seed(0)
    # Attention dropout draws random numbers in every training forward: the RNG must be put back.
    model = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.5,
                                         attn_implementation="sdpa"))
    model.train()
    packed = PackedDataset(packed_dir)
    sampler = MixtureSampler(packed, split_documents(packed, 0.0, 1)[0], 32, 1, {})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random.seed(5)
    np.random.seed(5)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    seconds = time_micro_steps(model, {n: collate([sampler[i] for i in range(n)]) for n in (1, 2)}, "cpu")
    assert set(seconds) == {1, 2} and all(s > 0 for s in seconds.values())
    assert random.getstate() == states[0]
    assert (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.get_rng_state(), states[2])
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---- two ranks -------------------------------------------------------------------------------------


def _train(tmp_path, packed_dir, name: str, steps: int, env: dict | None = None, run=None, **train) -> tuple:
    run = run or tmp_path / name
    exp = write_experiment(tmp_path / f"{name}.yaml", run, packed_dir, steps=steps, zero_stage=2, lr=1e-3, **train)
    run_torchrun(2, ["train", str(exp)], timeout=300, env=env)
    return run, load_file(run / "export" / "model.safetensors"), read_metrics(run)


@pytest.mark.distributed
def test_auto_split_trains_like_the_same_fixed_split_and_resumes_with_it(tmp_path, packed_dir) -> None:
    # Rank 1 "takes three times as long per sequence": the split of each 4-sequence micro-step is [3, 1].
    slow_rank1 = {COSTS_VAR: "0:1,0:3"}
    run, auto, auto_metrics = _train(tmp_path, packed_dir, "auto", 4, slow_rank1, micro_batch_size=2,
                                     micro_batch_sizes="auto")
    _, fixed, fixed_metrics = _train(tmp_path, packed_dir, "fixed", 4, micro_batch_sizes=[3, 1])
    _, equal, equal_metrics = _train(tmp_path, packed_dir, "equal", 4, micro_batch_size=2)

    assert [auto_metrics[s]["micro_batch/rank0"] for s in range(1, 5)] == [3] * 4
    assert auto_metrics[4]["micro_batch/rank1"] == 1 and equal_metrics[4]["micro_batch/rank0"] == 2
    assert {"step_time_s/rank1", "mfu/rank1", "tokens_per_s/rank1"} <= set(auto_metrics[4])
    rec = auto_metrics[4]
    share = [rec[f"micro_batch/rank{r}"] / sum(rec[f"micro_batch/rank{q}"] for q in (0, 1)) for r in (0, 1)]
    assert rec["mfu/job_by_work"] == pytest.approx(sum(share[r] * rec[f"mfu/rank{r}"] for r in (0, 1)))
    split = json.loads((run / "checkpoints" / "step-00000004" / "meta.json").read_text())["batch_split"]
    assert split["micro_sizes"] == [3, 1] and split["accumulation"] == 2 and len(split["hardware"]) == 2
    # Calibration ran for real and left no trace: bit for bit the run with the split given by hand.
    for key, ref in fixed.items():
        assert torch.equal(auto[key], ref), key
    assert [auto_metrics[s]["loss"] for s in range(1, 5)] == [fixed_metrics[s]["loss"] for s in range(1, 5)]
    # The loss is normalised by global tokens, so the equal split agrees up to summation order.
    for key, ref in equal.items():
        assert float((auto[key] - ref).norm() / ref.norm()) <= 1e-5, key
    assert auto_metrics[4]["loss"] == pytest.approx(equal_metrics[4]["loss"], rel=1e-5)

    # Resume on the same hardware: the checkpoint's split wins over what calibration would now say.
    slow_rank0 = {COSTS_VAR: "0:3,0:1"}
    _, _, resumed = _train(tmp_path, packed_dir, "auto", 6, slow_rank0, run=run, micro_batch_size=2,
                           micro_batch_sizes="auto")
    assert [resumed[s]["micro_batch/rank0"] for s in (5, 6)] == [3, 3]
    # Another thread count is other hardware: calibrated again.
    _, _, recalibrated = _train(tmp_path, packed_dir, "auto", 7, {**slow_rank0, "OMP_NUM_THREADS": "2"}, run=run,
                                micro_batch_size=2, micro_batch_sizes="auto")
    assert recalibrated[7]["micro_batch/rank0"] == 1 and recalibrated[7]["micro_batch/rank1"] == 3
