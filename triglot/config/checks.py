"""Checks a composed config must pass before any stage starts: plain names and numbers that can be true.

Names (hardware profile, communication backend, cluster profile) reach generated shell scripts and file names,
so they are held to a strict pattern; sizes and counts that cannot work (no steps, an empty batch) are refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
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
    "data.rows_per_part": 1,
    "data.unit_bytes": 1,
    "data.dedup.partitions": 1,
    "eval.batch_size": 0,
    "eval.max_length": 0,
    "eval.num_fewshot": 0,
    "eval.limit_per_subject": 0,
    "eval.max_new_tokens": 0,
    "run.seed": 0,
}
ZERO_IS_DEFAULT = {"train.micro_batch_size", "eval.batch_size", "eval.max_length", "eval.max_new_tokens"}
# key -> largest value that can work.
MAXIMUMS: dict[str, int] = {
    "run.seed": 2**63 - 1,  # what torch.manual_seed and numpy's generators take
    "tokenizer.vocab_size": 2**24,  # ids are stored as uint32; a larger vocabulary cannot be trained in memory
}
POSITIVE_FLOATS = ("train.lr", "train.grad_bucket_mb", "model.rope_theta")
# key -> (low, high, whether high itself is allowed) for fractions.
FRACTIONS: dict[str, tuple[float, float, bool]] = {
    "train.val_fraction": (0.0, 1.0, False),
    "train.min_lr_ratio": (0.0, 1.0, True),
    "train.decay_fraction": (0.0, 1.0, True),
}


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
            meaning = " (0 means the default)" if key in ZERO_IS_DEFAULT else ""
            raise ConfigError(f"{key} = {value} is impossible: use {least} or more{meaning}")
    for key, most in MAXIMUMS.items():
        value = int(_select(cfg, key))
        if value > most:
            raise ConfigError(f"{key} = {value} is too large: use at most {most:,}")
    for key in POSITIVE_FLOATS:
        value = float(_select(cfg, key))
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{key} = {_select(cfg, key)} is impossible: use a finite value above 0")
    for key, (low, high, closed) in FRACTIONS.items():
        value = float(_select(cfg, key))
        if not (low <= value <= high) or (value == high and not closed):
            bound = f"{high:g}" if closed else f"below {high:g}"
            raise ConfigError(f"{key} = {_select(cfg, key)} is impossible: use a value from {low:g} to {bound}")
    check_betas("train.optimizer.betas", cfg.train.optimizer.betas)
    check_micro_batch_sizes(cfg.train.micro_batch_sizes)
    for language, weight in cfg.train.mixture.items():
        if not (isinstance(weight, (int, float)) and math.isfinite(float(weight)) and float(weight) >= 0):
            raise ConfigError(f"train.mixture.{language} = {weight}: a mixture weight must be a number of 0 or more")
    if str(cfg.tokenizer.backend) == "sentencepiece" and not 0.98 <= float(cfg.tokenizer.character_coverage) <= 1:
        raise ConfigError(f"tokenizer.character_coverage = {cfg.tokenizer.character_coverage}: SentencePiece takes "
                          "0.98 to 1.0 (0.9995 is its default for CJK text)")
    for section in ("sft", "dpo"):  # their train sections override train.* for that stage
        for key, value in _flat(cfg[section].train, "train."):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            least = MINIMUMS.get(key)
            if least is not None and value < least:
                raise ConfigError(f"{section}.{key} = {value} is impossible: use {least} or more")
            if key in POSITIVE_FLOATS and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{section}.{key} = {value} is impossible: use a finite value above 0")


def check_betas(key: str, betas: Any) -> None:
    """AdamW's (beta1, beta2): two numbers from 0 to below 1."""
    values = list(betas) if isinstance(betas, (list, tuple, ListConfig)) else [betas]
    if len(values) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                   for b in values):
        raise ConfigError(f"{key} = {values}: give two numbers from 0 to below 1, e.g. [0.9, 0.95]")


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


def check_stages(stages: Any) -> None:
    """run.stages: stage names (which ones exist is checked where they run, with the list of names)."""
    for index, stage in enumerate(stages):
        if not isinstance(stage, str):
            raise ConfigError(f"run.stages[{index}] = {stage}: list stage names, e.g. run.stages=[clean,tokenizer,pack]")


# DeepSpeed keys triglot derives from its own settings: a train.deepspeed value for one would disagree with them.
DEEPSPEED_DERIVED = {"train_batch_size": "train.global_batch_size",
                     "train_micro_batch_size_per_gpu": "train.micro_batch_size",
                     "gradient_accumulation_steps": "train.global_batch_size and train.micro_batch_size",
                     "gradient_clipping": "train.optimizer.grad_clip"}
# DeepSpeed config sections that are mappings (top level, and inside zero_optimization).
DEEPSPEED_SECTIONS = {"zero_optimization", "optimizer", "scheduler", "fp16", "bf16", "amp", "activation_checkpointing",
                      "flops_profiler", "comms_logger", "data_types", "aio", "tensorboard", "wandb", "csv_monitor",
                      "compile", "checkpoint", "elasticity", "autotuning",
                      "zero_optimization.offload_optimizer", "zero_optimization.offload_param"}


def check_deepspeed(overrides: Any, prefix: str = "") -> None:
    """train.deepspeed: no key triglot derives, and a mapping wherever DeepSpeed reads one."""
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if name in DEEPSPEED_DERIVED:
            raise ConfigError(f"train.deepspeed.{name}: triglot sets {key} from {DEEPSPEED_DERIVED[name]}; set that "
                              "instead")
        if name in DEEPSPEED_SECTIONS:
            if not hasattr(value, "items") or isinstance(value, str):
                raise ConfigError(f"train.deepspeed.{name} = {value!r}: DeepSpeed reads a mapping here "
                                  f"(e.g. {key}: {{...}})")
            check_deepspeed(value, f"{name}.")


OUTPUT_KEYS = ("run.dir", "data.output_dir", "tokenizer.output_dir", "pack.output_dir", "eval.output_dir",
               "train.checkpoint.dir")


def check_output_paths(cfg: Any) -> None:
    """Output folders that can never be made: a name too long for a file system, or one below a regular file.

    Only what holds on any machine is checked here (the folder may not exist yet, or exist only on the
    cluster's nodes); a folder the stage then cannot write is reported by the command as a user error.
    """
    for key in OUTPUT_KEYS:
        text = str(_select(cfg, key) or "")
        if not text:
            continue
        path = Path(text)
        long = next((part for part in path.parts if len(part.encode("utf-8")) > 255), None)
        if long is not None:
            raise ConfigError(f"{key} = {text[:80]!r}...: the folder name {long[:40]!r}... is longer than the 255 "
                              "bytes a file system allows; choose a shorter name")
        for parent in (path, *path.parents):
            if parent.exists() or parent.is_symlink():
                if not parent.is_dir():
                    raise ConfigError(f"{key} = {text!r}: {parent} is a file, not a folder; choose another path")
                break


def check_config(cfg: Any) -> None:
    """Every check above; `compose` calls it, so no stage sees a config that fails one."""
    check_name("hardware.name", cfg.hardware.name)
    check_name("hardware.comm_backend", cfg.hardware.comm_backend, pattern=BACKEND)
    check_attention(cfg.hardware)
    check_stages(cfg.run.stages)
    check_deepspeed(cfg.train.deepspeed)
    check_output_paths(cfg)
    check_numbers(cfg)
