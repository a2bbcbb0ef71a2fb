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
                  adapter_too: bool = True, max_shard_size: str | int = "5GB") -> None:
    """Write `out_dir` as a plain Hugging Face folder (merged weights, config, tokenizer), atomically.

    Streamed like the full export (train/export.py): under ZeRO-3 one module is gathered at a time and each
    LoRA target is written as its base weight plus the adapter's delta, so no rank holds the whole model.
    Collective under ZeRO-3 (every rank must call it). With `adapter_too`, the adapter alone is also kept
    in `out_dir/adapter/` for peft users.
    """
    from triglot.train.export import export_units, plain_units

    if not is_main and zero_stage != 3:
        return  # the parameters are whole on rank 0: nothing to gather
    if not is_peft(model):
        export_units(model, plain_units(model), out_dir, tokenizer, zero_stage, is_main, max_shard_size)
        return
    base = model.get_base_model()
    units = merged_units(base)
    if units is None:
        log.warning("these adapters (DoRA, LoRA bias or a non-linear target) are merged by peft on a whole "
                    "gathered copy of the model, not module by module")
        _export_merged_whole(model, out_dir, tokenizer, zero_stage, is_main, adapter_too)
        return

    def adapter(folder: Path) -> None:
        if adapter_too:
            export_adapter(model, folder / "adapter", None, zero_stage, is_main)

    export_units(base, units, out_dir, tokenizer, zero_stage, is_main, max_shard_size, extra=adapter,
                 config_changes=untied_embeddings(base, units))


def untied_embeddings(base: Any, units: list[Any]) -> dict:
    """{"tie_word_embeddings": False} when the output embedding is written apart from the input one (it
    trained as a modules_to_save copy), as peft's merge sets it; else nothing to change."""
    out = base.get_output_embeddings()
    if out is None or not getattr(base.config, "tie_word_embeddings", False):
        return {}
    prefix = next(name for name, module in base.named_modules() if module is out)
    written = {spec.name for unit in units for spec, _ in unit.outputs}
    return {"tie_word_embeddings": False} if f"{prefix}.weight" in written else {}


def merged_units(base: Any) -> list[Any] | None:
    """Export units of a peft-wrapped transformers model (`get_base_model()`) with the adapters folded in.

    A LoRA linear layer is one unit: its base weight (and bias) with the LoRA A and B matrices, written under
    the plain model's name as W + scaling * B @ A of each active adapter (peft's own get_delta_weight). A
    modules_to_save copy is written in place of the module it trained. None when a layer is of a kind this
    does not merge (DoRA, LoRA bias, embedding or convolution targets): the caller falls back to peft.
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper
    from triglot.train.export import ExportUnit, TensorSpec, full_shape, module_tensors

    units: list[ExportUnit] = []
    seen: set[int] = set()
    done: list[str] = []  # modules written as a whole: their submodules are skipped

    for prefix, module in base.named_modules():
        if any(prefix.startswith(d + ".") for d in done):
            continue
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear):
                return None
            active = [] if module.disable_adapters else [a for a in module.active_adapters if a in module.lora_A]
            if any(module.use_dora.get(a, False) or getattr(module, "lora_bias", {}).get(a, False) for a in active):
                return None
            layer = module.get_base_layer()
            weight, bias = layer.weight, layer.bias
            gather = [weight, *([bias] if bias is not None else [])]
            gather += [p for a in active for p in (module.lora_A[a].weight, module.lora_B[a].weight)]

            def merged(module=module, weight=weight, active=active) -> Any:
                total = weight.float()  # in fp32, then back, as peft's in-place merge computes it
                for a in active:
                    total = total + module.get_delta_weight(a).float()
                return total.to(weight.dtype)

            seen.update(id(p) for p in module.parameters())
            outputs = [(TensorSpec(dot + "weight", full_shape(weight), weight.dtype), merged)]
            if bias is not None:
                outputs.append((TensorSpec(dot + "bias", full_shape(bias), bias.dtype), lambda b=bias: b))
            units.append(ExportUnit(gather, outputs))
            done.append(prefix)
        elif isinstance(module, ModulesToSaveWrapper):
            name = module.active_adapter if isinstance(module.active_adapter, str) else module.active_adapter[0]
            seen.update(id(p) for p in module.original_module.parameters())  # the untrained original: not written
            for sub_prefix, sub in module.modules_to_save[name].named_modules():
                group = module_tensors(sub, dot + (f"{sub_prefix}." if sub_prefix else ""), seen)
                if group:
                    units.append(ExportUnit.as_is(group))
            done.append(prefix)
        elif group := module_tensors(module, dot, seen):
            units.append(ExportUnit.as_is(group))
    return units


def _export_merged_whole(model: Any, out_dir: Path, tokenizer: Any, zero_stage: int, is_main: bool,
                         adapter_too: bool) -> None:
    """peft's merge_and_unload on a copy, with every parameter gathered at once (the fallback)."""
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

