"""Model building and the generated DeepSpeed config (single process)."""

from __future__ import annotations

import pytest
import torch
from triglot.train.data import BatchLayout
from triglot.train.engine import deepspeed_config
from triglot.train.model import build_model, flops_per_token, packed_loss_sum

from triglot.config import compose
from triglot.errors import ConfigError

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_kv_heads": 2}


def _batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (2, 16), generator=gen)
    return {"input_ids": ids, "labels": torch.roll(ids, -1, 1), "position_ids": torch.arange(16).repeat(2, 1)}


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        cfg = compose({"hardware": {"activation_checkpointing": checkpointing}, "model": SMALL})
        model = build_model(cfg, vocab_size=50).train()
        loss, n = packed_loss_sum(model, _batch(), "cpu")
        (loss / n).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_pretrained_folder_loads_and_grows_to_the_tokenizer(tmp_path):
    cfg = compose({"model": SMALL})
    build_model(cfg, vocab_size=50).save_pretrained(tmp_path / "base")
    grown = build_model(compose({"model": {**SMALL, "pretrained": str(tmp_path / "base")}}), vocab_size=60)
    assert grown.get_input_embeddings().weight.shape[0] == 60
    base = build_model(cfg, vocab_size=50)
    torch.testing.assert_close(grown.get_input_embeddings().weight[:50], base.get_input_embeddings().weight)


def test_every_shipped_model_shape_is_a_valid_llama():
    from transformers import LlamaConfig
    from triglot.train.model import llama_config

    for name in ("tiny", "125m", "350m", "1b", "7b", "13b", "70b"):
        cfg = compose({"defaults": {"model": name}})
        assert isinstance(llama_config(cfg.model, 32000), LlamaConfig)
        assert flops_per_token(cfg.model, 32000, 2048) > 0
    with pytest.raises(ConfigError, match="num_heads"):
        llama_config(compose({"model": {"hidden_size": 30, "num_heads": 4}}).model, 100)


def test_deepspeed_config_follows_the_run_config():
    cfg = compose({"defaults": {"hardware": "nvidia-h100"},
                   "train": {"zero_stage": 3, "offload_optimizer": True, "offload_params": True,
                             "deepspeed": {"zero_optimization": {"reduce_bucket_size": 1000}, "flops_profiler": {}}}})
    ds = deepspeed_config(cfg, BatchLayout((3, 5), 2), rank=1)
    assert ds["train_micro_batch_size_per_gpu"] == 5 and ds["gradient_accumulation_steps"] == 2
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu" and zero["reduce_bucket_size"] == 1000
    assert ds["optimizer"]["type"] == "AdamW" and "flops_profiler" in ds
    with pytest.raises(ConfigError, match="offload_params"):
        deepspeed_config(compose({"train": {"zero_stage": 2, "offload_params": True}}), BatchLayout((4,), 1), 0)


def test_eta_follows_the_recent_step_time() -> None:
    from triglot.train.metrics import Eta, format_duration

    eta = Eta(smoothing=0.5)
    assert eta.update(2.0, 10) == 20.0
    assert eta.update(4.0, 9) == 27.0  # mean 3 s, 9 steps left
    assert format_duration(27) == "0m27s" and format_duration(3725) == "1h02m"
