"""Fine-tuning with two DeepSpeed processes on CPU from a pretraining export: full and LoRA, with resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.train.resume_check import assert_resumed_from
from triglot.testing import run_torchrun

pytestmark = [pytest.mark.distributed]
SFT = "../shared/data/corpora/sft"


def write_run(root: Path, model_dir: Path, steps: int, zero: int, lora: bool = False, merge: bool = True) -> Path:
    """A pipeline run folder whose pretraining export is the tiny model, and its config."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "export").exists():
        shutil.copytree(model_dir, root / "export")
    cfg = {
        "run": {"name": "sft-test", "dir": str(root), "seed": 5},
        "tracking": {"mode": "disabled"},
        "hardware": {"name": "cpu"},
        "train": {"seq_len": 256, "global_batch_size": 4, "lr": 3e-3, "zero_stage": zero, "schedule": "constant"},
        "sft": {
            "train": {"steps": steps, "checkpoint": {"every": 2}},
            "datasets": [
                {"name": "en", "paths": [f"{SFT}/sft_alpaca_bilingual_en_zh/*.json"], "language": "en",
                 "fields": {"instruction": "en_instruction", "input": "en_input", "output": "en_output"},
                 "max_samples": 120},
                {"name": "zh", "paths": [f"{SFT}/sft_alpaca_bilingual_en_zh/*.json"], "language": "zh-Hans",
                 "fields": {"instruction": "zh_instruction", "input": "zh_input", "output": "zh_output"},
                 "max_samples": 120, "weight": 0.5},
                {"name": "yue", "paths": [f"{SFT}/yue_alpaca_seed/seed.jsonl"], "language": "yue", "max_samples": 80,
                 "weight": 0.5},
            ],
            "lora": {"enabled": lora, "rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "up_proj"],
                     "merge_on_export": merge},
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "sft" / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_full_finetune_two_ranks_and_exact_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    whole = write_run(tmp_path / "whole", tiny_model_dir, steps=4, zero=2)
    run_torchrun(2, ["sft", str(whole)])
    export = tmp_path / "whole" / "sft" / "export"
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert "<|im_start|>" in tokenizer.chat_template and model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    manifest = json.loads((tmp_path / "whole" / "sft" / "checkpoints" / "manifest.json").read_text())
    assert manifest["stage"] == "sft"
    first = losses(tmp_path / "whole")
    assert sorted(first) == [1, 2, 3, 4] and all(v == v for v in first.values())  # finite
    # Stop at step 2, then continue to 4 (constant lr, so stopping early changes no schedule): the same
    # samples and the same losses as the uninterrupted run.
    resumed = write_run(tmp_path / "resumed", tiny_model_dir, steps=2, zero=2)
    run_torchrun(2, ["sft", str(resumed)])
    write_run(tmp_path / "resumed", tiny_model_dir, steps=4, zero=2)
    run_torchrun(2, ["sft", str(resumed)])
    assert_resumed_from(tmp_path / "resumed" / "sft" / "checkpoints" / "metrics.jsonl", 2, 4)
    second = losses(tmp_path / "resumed")
    for step in (3, 4):
        assert second[step] == pytest.approx(first[step], rel=1e-6, abs=1e-7)


def test_lora_under_zero3_exports_a_merged_plain_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = write_run(tmp_path / "run", tiny_model_dir, steps=2, zero=3, lora=True)
    # Every parameter sharded (DeepSpeed keeps those under 1e5 elements whole by default), so the streamed
    # merge gathers real ZeRO-3 slices, a module at a time.
    run_torchrun(2, ["sft", str(config), "train.deepspeed.zero_optimization.stage3_param_persistence_threshold=0"])
    export = tmp_path / "run" / "sft" / "export"
    merged = load_file(export / "model.safetensors")
    adapter = load_file(export / "adapter" / "adapter_model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not any("lora" in k for k in merged)
    key = "model.layers.1.self_attn.q_proj.weight"
    a = next(v for k, v in adapter.items() if "layers.1.self_attn.q_proj.lora_A" in k)
    b = next(v for k, v in adapter.items() if "layers.1.self_attn.q_proj.lora_B" in k)
    delta = (8.0 / 4) * b @ a
    assert delta.abs().max() > 0  # the adapter trained
    assert (merged[key] - base[key] - delta).abs().max() < 1e-6  # and is folded into the base weight
    assert (merged["model.layers.1.self_attn.k_proj.weight"] == base["model.layers.1.self_attn.k_proj.weight"]).all()


def test_lora_under_zero3_exports_the_adapter_alone(tiny_model_dir: Path, tmp_path: Path) -> None:
    """merge_on_export=false: the adapter is gathered from the ZeRO-3 shards, not saved as empty slices."""
    from safetensors.torch import load_file

    # DeepSpeed keeps parameters under 1e5 elements whole on every rank; a threshold of 0 shards the
    # adapter too, as it is in a model of real size.
    shard_all = ["train.deepspeed.zero_optimization.stage3_param_persistence_threshold=0"]
    merged_run = write_run(tmp_path / "merged", tiny_model_dir, steps=2, zero=3, lora=True)
    run_torchrun(2, ["sft", str(merged_run), *shard_all])
    kept = load_file(tmp_path / "merged" / "sft" / "export" / "adapter" / "adapter_model.safetensors")
    alone_run = write_run(tmp_path / "alone", tiny_model_dir, steps=2, zero=3, lora=True, merge=False)
    run_torchrun(2, ["sft", str(alone_run), *shard_all])
    export = tmp_path / "alone" / "sft" / "export"
    assert (export / "adapter_config.json").is_file() and not (export / "model.safetensors").exists()
    assert (export / "tokenizer_config.json").is_file() and not export.with_name("export.tmp").exists()
    alone = load_file(export / "adapter_model.safetensors")
    assert sorted(alone) == sorted(kept) and any("lora_B" in k for k in alone)
    for key, tensor in kept.items():
        assert alone[key].shape == tensor.shape and alone[key].numel() > 0, key
        assert (alone[key] - tensor).abs().max() < 1e-6, key  # the same training, the same adapter
    assert all(v.abs().max() > 0 for k, v in alone.items() if "lora_B" in k)  # trained, not the zero init

