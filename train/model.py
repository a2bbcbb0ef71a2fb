"""Model building (Llama-family shapes or a local Hugging Face folder) and the packed loss.

Model code knows nothing of ranks: ZeRO-3 sharded construction is the caller's context manager. The
streamed export lives in train/export.py (`export_hf` is importable from here as well).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from triglot.train.export import export_hf  # noqa: F401  (re-exported)

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
IGNORE = -100


def llama_config(model_cfg: Any, vocab_size: int, attention: str = "sdpa", tokenizer: Any = None) -> Any:
    """transformers LlamaConfig from the model section."""
    from transformers import LlamaConfig

    if model_cfg.arch != "llama":
        raise ConfigError(f"model.arch '{model_cfg.arch}' is not supported; use 'llama' (Llama-family shapes)")
    if model_cfg.hidden_size % model_cfg.num_heads or model_cfg.num_heads % model_cfg.num_kv_heads:
        raise ConfigError("model.hidden_size must divide by model.num_heads, and num_heads by num_kv_heads")
    special = {}
    if tokenizer is not None:
        special = {k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=model_cfg.hidden_size,
        intermediate_size=model_cfg.intermediate_size,
        num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads,
        num_key_value_heads=model_cfg.num_kv_heads,
        max_position_embeddings=model_cfg.max_seq_len,
        rope_theta=model_cfg.rope_theta,
        rms_norm_eps=model_cfg.rms_norm_eps,
        tie_word_embeddings=model_cfg.tie_embeddings,
        initializer_range=model_cfg.initializer_range,
        attn_implementation=attention,
        **{k: v for k, v in special.items() if v is not None},
    )


def attention_implementation(hardware: Any) -> str:
    """transformers' attn_implementation for the profile; flash_attention_2 only where flash-attn is installed."""
    import importlib.util

    attention = hardware.attention.value
    if attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("hardware.attention = flash_attention_2 needs the flash-attn package, which is not "
                          "installed: pip install flash-attn, or use hardware.attention=flex_attention or sdpa")
    return attention


def build_model(cfg: Any, vocab_size: int, tokenizer: Any = None, init_context: Any = None) -> Any:
    """A fresh Llama from cfg.model, or cfg.model.pretrained; embeddings grown to the tokenizer's size."""
    import torch
    from transformers import AutoModelForCausalLM

    attention = attention_implementation(cfg.hardware)
    ctx = init_context or nullcontext()
    if cfg.model.pretrained:
        path = Path(cfg.model.pretrained)
        if not (path / "config.json").is_file():
            raise InputError(f"model.pretrained: {path} is not a Hugging Face model folder (no config.json)")
        with ctx:
            model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention, dtype=torch.float32)
        if vocab_size > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(vocab_size)
    else:
        config = llama_config(cfg.model, vocab_size, attention, tokenizer)
        torch.manual_seed(int(cfg.run.seed))
        # from_config builds under ZeRO-3's zero.Init when a HfDeepSpeedConfig is alive, and then
        # initialises the sharded weights correctly (gathering where it must).
        with ctx:
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if cfg.hardware.activation_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def packed_loss_sum(model: Any, batch: dict, device: Any) -> tuple[Any, int]:
    """Summed next-token loss over the batch's target tokens, and their count.

    Positions restart per document and no attention mask is passed, so transformers derives a
    block-diagonal causal mask from the position ids: attention stays inside each document.
    """
    import torch.nn.functional as F

    input_ids = batch["input_ids"].to(device)
    labels = batch["labels"].to(device)
    out = model(input_ids=input_ids, position_ids=batch["position_ids"].to(device), use_cache=False)
    logits = out.logits.float()
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


def flops_per_token(model_cfg: Any, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x parameters in matmuls plus attention (PaLM appendix B)."""
    h, layers = model_cfg.hidden_size, model_cfg.num_layers
    kv = h * model_cfg.num_kv_heads // model_cfg.num_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * model_cfg.intermediate_size
    matmul_params = layers * per_layer + vocab_size * h
    return 6.0 * matmul_params + 12.0 * layers * h * seq_len


def load_tokenizer(path: Path | None) -> Any:
    if path is None:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise InputError(f"tokenizer folder {path} cannot be loaded ({err}); set model.tokenizer") from err
