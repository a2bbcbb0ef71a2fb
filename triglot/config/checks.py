"""Checks a composed config must pass before any stage starts: plain names and numbers that can be true.

Names (hardware profile, communication backend, cluster profile) reach generated shell scripts and file names,
so they are held to a strict pattern; sizes and counts that cannot work (no steps, an empty batch) are refused.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import ListConfig

from triglot.errors import ConfigError

# A profile name: letters, digits and _.+- (not first), as in configs/hardware/nvidia-h100.yaml.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
# A torch.distributed backend name (gloo, nccl, hccl, ccl, xccl, ...) or "auto".
BACKEND = re.compile(r"[a-z][a-z0-9_]{0,31}")

# key -> smallest value that can work. Zero is allowed where the schema gives it a meaning ("use the default").
MINIMUMS: dict[str, int] = {
    "run.nproc_per_node": 1,
    "hardware.devices_per_node": 1,
    "hardware.micro_batch_size": 1,
    "model.hidden_size": 1,
    "model.intermediate_size": 1,
    "model.num_layers": 1,
    "model.num_heads": 1,
    "model.num_kv_heads": 1,
    "model.max_seq_len": 1,
    "train.steps": 1,
    "train.seq_len": 1,
    "train.global_batch_size": 1,
    "train.micro_batch_size": 0,
    "train.warmup_steps": 0,
    "train.checkpoint.every": 0,
    "train.checkpoint.keep_last": 0,
    "train.val_every": 0,
    "train.val_batches": 1,
    "train.dist_timeout_s": 1,
    "train.preflight_timeout_s": 1,
    "launch.nodes": 1,
    "launch.gpus_per_node": 0,
    "launch.cpus_per_rank": 1,
    "launch.data_shards": 1,
    "launch.signal_lead_s": 0,
    "launch.max_requeues": 0,
    "launch.stop_timeout_s": 1,
    "launch.rendezvous_timeout_s": 1,
    "launch.array_parallelism": 0,
}
POSITIVE_FLOATS = ("train.lr", "train.grad_bucket_mb")


def check_name(key: str, value: Any, where: str = "", pattern: re.Pattern = NAME) -> str:
    """`value` if it is a plain name, else a ConfigError naming the key."""
    text = str(value)
    if not pattern.fullmatch(text):
        place = f" ({where})" if where else ""
        raise ConfigError(f"{key}{place} = {text!r} is not a plain name (allowed: {pattern.pattern}); "
                          "use letters, digits and _.+- only")
    return text


def _select(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_numbers(cfg: Any) -> None:
    """Counts and sizes that cannot work are refused, naming the key and the smallest usable value."""
    for key, least in MINIMUMS.items():
        value = int(_select(cfg, key))
        if value < least:
            meaning = " (0 means the default)" if least == 0 else ""
            raise ConfigError(f"{key} = {value} is impossible: use {least} or more{meaning}")
    for key in POSITIVE_FLOATS:
        if not float(_select(cfg, key)) > 0:
            raise ConfigError(f"{key} = {_select(cfg, key)} is impossible: use a value above 0")
    check_micro_batch_sizes(cfg.train.micro_batch_sizes)
    for key, value in _flat(cfg.sft.train, "train."):
        least = MINIMUMS.get(key)
        if least is not None and isinstance(value, (int, float)) and value < least:
            raise ConfigError(f"sft.{key} = {value} is impossible: use {least} or more")


def check_micro_batch_sizes(sizes: Any) -> None:
    """train.micro_batch_sizes: `auto`, or whole numbers of at least 1, one per rank."""
    if isinstance(sizes, str):
        if sizes != "auto":
            raise ConfigError(f"train.micro_batch_sizes = {sizes!r}: give one size per rank (e.g. [3, 5]) or auto")
        return
    if not isinstance(sizes, (list, tuple, ListConfig)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise ConfigError(f"train.micro_batch_sizes = {sizes}: give whole numbers, one per rank (e.g. [3, 5]), or auto")
    if any(int(size) < 1 for size in sizes):
        raise ConfigError(f"train.micro_batch_sizes = {list(sizes)}: every rank needs at least 1 sequence per "
                          "micro-step")


def _flat(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf below a mapping such as sft.train."""
    items: list[tuple[str, Any]] = []
    for key, value in node.items():
        if hasattr(value, "items"):
            items.extend(_flat(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def check_attention(hardware: Any) -> None:
    """GPU-only attention kernels refused on CPU (FlexAttention has no CPU backward, flash-attn no CPU build)."""
    attention = getattr(hardware.attention, "value", hardware.attention)
    if attention in ("flex_attention", "flash_attention_2") and hardware.accelerator == "cpu":
        raise ConfigError(f"hardware.attention = {attention} needs a GPU, and this profile "
                          f"({hardware.name}) runs on CPU: use hardware.attention=sdpa")


def check_config(cfg: Any) -> None:
    """Every check above; `compose` calls it, so no stage sees a config that fails one."""
    check_name("hardware.name", cfg.hardware.name)
    check_name("hardware.comm_backend", cfg.hardware.comm_backend, pattern=BACKEND)
    check_attention(cfg.hardware)
    check_numbers(cfg)
