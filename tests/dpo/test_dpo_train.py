"""`triglot dpo` with two DeepSpeed processes on CPU: metrics, the reference cache, export and exact resume;
LoRA under ZeRO-3 with the base model (adapters disabled) as the reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.dpo.conftest import read_metrics, write_run
from tests.train.resume_check import assert_resumed_from
from triglot.testing import run_torchrun

pytestmark = [pytest.mark.distributed]
METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "pairs")


def test_dpo_two_ranks_metrics_export_and_exact_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    whole = write_run(tmp_path / "whole", tiny_model_dir, steps=4, zero=2)
    run_torchrun(2, ["dpo", str(whole)])
    first = read_metrics(tmp_path / "whole")
    assert sorted(first) == [1, 2, 3, 4]
    for rec in first.values():
        assert all(math.isfinite(rec[k]) for k in METRICS), rec
        assert rec["rewards/margin"] == pytest.approx(rec["rewards/chosen"] - rec["rewards/rejected"], abs=1e-9)
    # Step 1: the policy is the reference, every reward 0 and the sigmoid loss log 2.
    assert first[1]["loss"] == pytest.approx(math.log(2), abs=1e-6) and first[1]["rewards/chosen"] == pytest.approx(0)
    assert first[4]["rewards/margin"] != 0
    checkpoints = tmp_path / "whole" / "dpo" / "checkpoints"
    cache = checkpoints / "reference" / "logps.npz"
    assert cache.is_file() and json.loads((cache.parent / "reference.json").read_text())["pairs"] == 80
    assert json.loads((checkpoints / "manifest.json").read_text())["stage"] == "dpo"
    export = tmp_path / "whole" / "dpo" / "export"
    model = AutoModelForCausalLM.from_pretrained(export)
    assert model.get_input_embeddings().weight.shape[0] >= 1

    # Stop at step 2, then go on to 4 (constant lr): the same pairs and losses as the uninterrupted run,
    # and the reference log-probs read back from the cache, not computed again.
    resumed = write_run(tmp_path / "resumed", tiny_model_dir, steps=2, zero=2)
    run_torchrun(2, ["dpo", str(resumed)])
    cache = tmp_path / "resumed" / "dpo" / "checkpoints" / "reference" / "logps.npz"
    written = cache.stat().st_mtime_ns
    write_run(tmp_path / "resumed", tiny_model_dir, steps=4, zero=2)
    run_torchrun(2, ["dpo", str(resumed)])
    assert cache.stat().st_mtime_ns == written
    assert_resumed_from(tmp_path / "resumed" / "dpo" / "checkpoints" / "metrics.jsonl", 2, 4)
    second = read_metrics(tmp_path / "resumed")
    for step in (3, 4):
        for key in ("loss", "rewards/margin", "rewards/accuracy"):
            assert second[step][key] == pytest.approx(first[step][key], rel=1e-6, abs=1e-7), (step, key)


def test_lora_dpo_under_zero3_live_reference_is_the_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    # Parameters under DeepSpeed's persistence threshold stay whole on every rank; 0 shards them all.
    shard_all = ["train.deepspeed.zero_optimization.stage3_param_persistence_threshold=0"]
    live = write_run(tmp_path / "live", tiny_model_dir, steps=3, zero=3, lora=True, reference="live")
    run_torchrun(2, ["dpo", str(live), *shard_all])
    stored = write_run(tmp_path / "stored", tiny_model_dir, steps=3, zero=3, lora=True)
    run_torchrun(2, ["dpo", str(stored), *shard_all])
    a, b = read_metrics(tmp_path / "live"), read_metrics(tmp_path / "stored")
    # LoRA starts as the identity, so at step 1 the policy is the base: with the adapters disabled as the
    # reference the loss is exactly log 2. Later steps: the live reference (base, adapters off, every step)
    # and the precomputed one (the starting model, once) are the same function of the weights.
    assert a[1]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert a[3]["rewards/margin"] != 0
    for step in (1, 2, 3):
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], abs=1e-5), step
    assert not (tmp_path / "live" / "dpo" / "checkpoints" / "reference" / "logps.npz").exists()
    export = tmp_path / "live" / "dpo" / "export"
    merged = load_file(export / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not any("lora" in k for k in merged)
    key = "model.layers.1.self_attn.q_proj.weight"
    assert (merged[key] - base[key]).abs().max() > 0  # the adapter trained and was folded in
    untouched = "model.layers.1.self_attn.k_proj.weight"
    assert (merged[untouched] == base[untouched]).all()
