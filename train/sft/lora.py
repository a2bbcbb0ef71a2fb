"""LoRA adapters through peft, and the export that merges them into a plain Hugging Face model.

The merged export needs no peft to load: base weights plus (alpha / rank) * B @ A in each target.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from triglot.errors import ConfigError

log = logging.getLogger(__name__)


def apply_lora(model: Any, lora: Any) -> Any:
    """Wrap `model` in a peft LoRA model per the sft.lora section; only adapters (and modules_to_save) train."""
    from peft import LoraConfig, get_peft_model

    if lora.rank < 1:
        raise ConfigError(f"sft.lora.rank must be at least 1, got {lora.rank}")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(lora.target_modules) - names)
    if missing:
        raise ConfigError(f"sft.lora.target_modules {missing} are not modules of this model; "
                          f"it has e.g. {sorted(n for n in names if n.endswith('proj'))}")
    config = LoraConfig(r=int(lora.rank), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                        target_modules=list(lora.target_modules), modules_to_save=list(lora.modules_to_save) or None,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    log.info("LoRA rank %d alpha %g on %s: %d of %d parameters train", lora.rank, lora.alpha,
             list(lora.target_modules), trainable, total)
    return peft_model


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged_copy(model: Any) -> Any:
    """A plain transformers model with the adapters folded in; the training model is left as it is."""
    if not is_peft(model):
        return model
    return copy.deepcopy(model).merge_and_unload()


def export_merged(model: Any, out_dir: Path, tokenizer: Any, zero_stage: int, is_main: bool,
                  adapter_too: bool = True) -> None:
    """Write `out_dir` as a plain Hugging Face folder (merged weights, config, tokenizer), atomically.

    Collective under ZeRO-3 (every rank must call it). With `adapter_too`, the adapter alone is also
    kept in `out_dir/adapter/` for peft users.
    """
    import os
    import shutil

    import torch

    params = list(model.parameters())
    if zero_stage == 3:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    else:
        gather = nullcontext()
    with gather, torch.no_grad():
        if not is_main:
            return
        plain = merged_copy(model)
        state = {name: t.detach().clone().cpu() for name, t in plain.state_dict().items()}
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        if adapter_too and is_peft(model):
            model.save_pretrained(tmp / "adapter")
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def _gathered(params: list[Any], zero_stage: int) -> Any:
    """Under ZeRO-3 each rank holds a slice of every parameter: gather full tensors (collective)."""
    if zero_stage != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def export_adapter(model: Any, out_dir: Path, tokenizer: Any, zero_stage: int, is_main: bool) -> None:
    """Write the adapter alone (peft's adapter_config.json and adapter_model.safetensors) and the tokenizer.

    Collective under ZeRO-3: the adapter's parameters, and the embeddings peft saves beside them when the
    vocabulary grew, are gathered first (saving the shards would write empty tensors). Written to a
    temporary folder and renamed, like the merged export.
    """
    import os
    import shutil

    params = [p for p in model.parameters() if p.requires_grad]
    params += [m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None]
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    with _gathered(list({id(p): p for p in params}.values()), zero_stage):
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp, safe_serialization=True)
    if not is_main:
        return
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)

