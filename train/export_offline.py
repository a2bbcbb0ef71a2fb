"""`triglot export CHECKPOINT OUT`: a saved ZeRO checkpoint (any stage, any world size) to a Hugging Face folder.

One process, no torch.distributed, no GPU. Rank files are read one at a time (memory-mapped) and each
rank's slice of every parameter is written straight into its place in the output shards, so memory is
bounded by one rank's fp32 partition, not by the model (DeepSpeed's zero_to_fp32 holds all of it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from triglot.train import checkpoint as ckpt
from triglot.train.export import ShardedSafetensorsWriter, TensorSpec, iter_slices, replace_folder, shard_bytes

from triglot.errors import InputError

log = logging.getLogger(__name__)
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _rank_of(path: Path) -> int:
    found = re.search(r"zero_pp_rank_(\d+)_", path.name)
    return int(found.group(1)) if found else 0


def _load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", mmap=True, weights_only=False)


def state_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(model states files, optimizer shard files), each in rank order; InputError when it is no checkpoint."""
    state = folder / ckpt.STATE_TAG
    models = sorted(state.glob("*model_states.pt"), key=_rank_of)
    optims = sorted(state.glob("*_optim_states.pt"), key=_rank_of)
    if not models:
        raise InputError(f"{folder} is not a triglot checkpoint (no {ckpt.STATE_TAG}/*model_states.pt); pass a "
                         "<checkpoints>/step-XXXXXXXX folder")
    problem = ckpt.verify(folder, checksums=False)
    if problem:
        raise InputError(f"checkpoint {folder} is not whole ({problem}); export an earlier step")
    return models, optims


def tensor_specs(model_states: dict, dtype: Any) -> tuple[list[TensorSpec], list[str]]:
    """Every parameter (trainable, then frozen) and persistent buffer, in the module's own order.

    Also returns the trainable names in the order DeepSpeed flattened them (its partitions follow it).
    """
    module = model_states.get("module") or {}
    buffer_names = set(model_states.get("buffer_names") or [])
    if model_states.get("param_shapes") is None:  # ZeRO-0: every weight whole in `module`, a tied one once
        seen: set[int] = set()
        flat = []
        for name, tensor in module.items():
            if name not in buffer_names and tensor.untyped_storage().data_ptr() not in seen:
                seen.add(tensor.untyped_storage().data_ptr())
                flat.append((name, tuple(tensor.shape)))
    else:
        flat = [(name, tuple(shape)) for group in model_states["param_shapes"] for name, shape in group.items()]
    frozen = list((model_states.get("frozen_param_shapes") or {}).items())
    buffers = [(k, v) for k, v in module.items() if k in buffer_names]
    specs = [TensorSpec(name, tuple(int(d) for d in shape), dtype) for name, shape in flat + frozen]
    specs += [TensorSpec(k, tuple(v.shape), dtype if v.is_floating_point() else v.dtype) for k, v in buffers]
    order = {name: i for i, name in enumerate(module)}
    specs.sort(key=lambda s: order.get(s.name, len(order)))
    if not specs and not module:
        raise InputError("the checkpoint's model states list no parameters")
    return specs, [name for name, _ in flat]


def write_zero3_rank(writer: ShardedSafetensorsWriter, optim: dict, model_states: dict, rank: int,
                     trainable: list[str], specs: dict[str, TensorSpec], world: int) -> None:
    """ZeRO-3: rank r holds elements [r*p, (r+1)*p) of every parameter (p = ceil(numel/world)), packed in order."""
    groups = optim["fp32_flat_groups"]
    offset = 0
    for name in trainable:
        numel = specs[name].numel
        part = -(-numel // world)
        valid = max(0, min(part, numel - rank * part))
        start = offset
        for piece in iter_slices(groups, offset, offset + valid):
            writer.write(name, piece, start=rank * part + start - offset)
            start += piece.numel()
        offset += part
    for name, fragment in (model_states.get("frozen_param_fragments") or {}).items():
        numel = specs[name].numel
        part = -(-numel // world)
        valid = max(0, min(part, numel - rank * part))
        writer.write(name, fragment.reshape(-1)[:valid], start=rank * part)


def write_zero12_rank(writer: ShardedSafetensorsWriter, optim: dict, model_states: dict, starts: list[int]) -> None:
    """ZeRO-1/2: each param group is flattened (with alignment padding) and cut into one slice per rank.

    `starts` holds, per group, where this rank's slice begins in the group's flat vector (advanced here).
    """
    paddings = optim.get("param_alignment_paddings")
    for g, (shapes, part) in enumerate(zip(model_states["param_shapes"], optim["single_partition_of_fp32_groups"],
                                           strict=True)):
        lo, hi = starts[g], starts[g] + part.numel()
        offset = 0
        for i, (name, shape) in enumerate(shapes.items()):
            numel = TensorSpec(name, tuple(shape), None).numel
            a, b = max(lo, offset), min(hi, offset + numel)
            if a < b:
                writer.write(name, part.reshape(-1)[a - lo:b - lo], start=a - offset)
            offset += numel + (paddings[g][i] if paddings is not None else 0)
        starts[g] = hi


def write_weights(folder: Path, tmp: Path, dtype: Any, max_bytes: int) -> ShardedSafetensorsWriter:
    """Stream the checkpoint's weights into `tmp` as sharded safetensors; returns the closed writer."""
    models, optims = state_files(folder)
    first = _load(models[0])
    specs, trainable = tensor_specs(first, dtype)
    writer = ShardedSafetensorsWriter(tmp, specs, max_bytes)
    by_name = {s.name: s for s in specs}
    try:
        module = first.get("module") or {}
        for name in set(by_name) - set(trainable) - set(first.get("frozen_param_shapes") or {}):
            writer.write(name, module[name])  # buffers
        if not optims:  # ZeRO-0: the model states file holds every weight
            for name in trainable:
                writer.write(name, module[name])
        else:
            _write_partitions(writer, folder, models, optims, first, trainable, by_name)
        writer.close()
    finally:
        writer.abort()
    return writer


def _write_partitions(writer: ShardedSafetensorsWriter, folder: Path, models: list[Path], optims: list[Path],
                      first: dict, trainable: list[str], by_name: dict[str, TensorSpec]) -> None:
    world = len(optims)
    starts = [0] * len(first["param_shapes"])
    for rank, path in enumerate(optims):
        log.info("export: reading %s (%d of %d)", path.name, rank + 1, world)
        optim = _load(path)["optimizer_state_dict"]
        if int(optim["zero_stage"]) <= 2 and rank == 0:  # ZeRO-1/2 keep frozen parameters whole
            for name, fragment in (first.get("frozen_param_fragments") or {}).items():
                writer.write(name, fragment)
        if int(optim["zero_stage"]) == 3:
            states = first if rank == 0 else _load(models[rank])
            write_zero3_rank(writer, optim, states, rank, trainable, by_name, world)
        else:
            write_zero12_rank(writer, optim, first, starts)
        del optim


def _saved_config(folder: Path) -> Any:
    from omegaconf import OmegaConf

    path = folder / "config.yaml"
    if not path.is_file():
        raise InputError(f"checkpoint {folder} has no config.yaml: it was not written by triglot train")
    return OmegaConf.load(path)


def model_config_and_tokenizer(folder: Path, cfg: Any, dtype: Any) -> tuple[Any, Any]:
    """The Hugging Face config (from the checkpoint's hf/ export, else rebuilt from config.yaml) and tokenizer."""
    from transformers import AutoConfig
    from triglot.train.model import llama_config, load_tokenizer

    lineage_tok = json.loads((folder / "lineage.json").read_text()).get("tokenizer_dir") \
        if (folder / "lineage.json").is_file() else ""
    tok_dir = folder / "hf" if (folder / "hf" / "tokenizer_config.json").is_file() else lineage_tok
    tokenizer = load_tokenizer(Path(tok_dir)) if tok_dir and Path(tok_dir).is_dir() else None
    if (folder / "hf" / "config.json").is_file():
        config = AutoConfig.from_pretrained(folder / "hf")
    else:
        vocab = int(ckpt.read_meta(folder).get("vocab_size") or cfg.model.vocab_size)
        if cfg.model.pretrained:
            config = AutoConfig.from_pretrained(cfg.model.pretrained)
            config.vocab_size = vocab
        else:
            config = llama_config(cfg.model, vocab, str(cfg.hardware.attention), tokenizer)
            config.architectures = ["LlamaForCausalLM"]
    config.dtype = dtype
    return config, tokenizer


def export_checkpoint(folder: Path, out_dir: Path, max_shard_size: str = "", dtype_name: str = "") -> Path:
    """Write `out_dir` (weights, config.json, tokenizer) from checkpoint `folder`, atomically."""
    import torch

    folder, out_dir = Path(folder), Path(out_dir)
    cfg = _saved_config(folder)
    precision = dtype_name or str(cfg.hardware.precision)
    if precision not in PRECISION_DTYPES:
        raise InputError(f"--dtype '{precision}' is not one of {sorted(PRECISION_DTYPES)}")
    dtype = getattr(torch, PRECISION_DTYPES[precision])
    export_cfg = cfg.train.get("export") or {}
    max_bytes = shard_bytes(max_shard_size or export_cfg.get("max_shard_size", "5GB"))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = write_weights(folder, tmp, dtype, max_bytes)
    config, tokenizer = model_config_and_tokenizer(folder, cfg, dtype)
    config.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    replace_folder(tmp, out_dir)
    log.info("exported %s to %s (%d shard(s), %s)", folder, out_dir, len(writer.names), precision)
    return out_dir
