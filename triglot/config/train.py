"""Train section: optimisation, schedule, data mixture, ZeRO, checkpointing and failure handling."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Schedule(str, Enum):
    cosine = "cosine"  # linear warmup, cosine decay to lr * min_lr_ratio
    linear = "linear"  # linear warmup, linear decay to lr * min_lr_ratio
    wsd = "wsd"  # warmup, stable, then linear decay over the last decay_fraction of steps
    constant = "constant"  # linear warmup, then constant


class OnNonFinite(str, Enum):
    stop = "stop"  # raise, naming the step
    # Drop micro-batches whose loss is NaN/inf (their tokens leave the normaliser) and go on; a step
    # with every micro-batch dropped leaves weights, optimizer state and LR schedule as they were.
    skip = "skip"


@dataclass
class OptimizerSection:
    # AdamW; offloaded runs use DeepSpeed's CPU AdamW with the same settings.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0


@dataclass
class ExportSection:
    # Hugging Face exports: safetensors shards of at most this size (transformers' notation: "5GB", "500MB").
    max_shard_size: str = "5GB"
    # Models with more parameters export only at the end of training and on request (`triglot export`),
    # not with every checkpoint: 1b and smaller export at every save, 7b and larger do not.
    every_save_max_params: int = 3_000_000_000


@dataclass
class CheckpointSection:
    every: int = 100  # steps between checkpoints; the last step is always saved
    keep_last: int = 3
    export_hf: bool = True  # write <checkpoint>/hf/ with each checkpoint
    resume: bool = True  # start from the newest complete checkpoint when there is one
    # Checkpoint folder; empty means <run.dir>/checkpoints.
    dir: str = ""


@dataclass
class TrainSection:
    steps: int = 100
    lr: float = 3e-4
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2  # wsd only
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    seq_len: int = 256
    global_batch_size: int = 8
    # Sequences per rank per micro-step; 0 takes hardware.micro_batch_size (capped to fit the global batch).
    micro_batch_size: int = 0
    # One micro-batch size per rank (ranks on unlike hardware); overrides micro_batch_size when set. `auto`
    # times each rank at start and splits every micro-step's sequences by measured throughput (train/balance.py),
    # keeping the accumulation steps of micro_batch_size (more where a rank's memory needs it). ZeRO 0-2 only.
    micro_batch_sizes: Any = field(default_factory=list)
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False  # ZeRO-3 only
    # More than one rank: all-reduce gradients bucket by bucket while backward runs (as PyTorch DDP does)
    # instead of all at once after it, under ZeRO-0 and wherever ZeRO-1/2 would reduce after backward
    # (train/grad_reduce.py); grad_bucket_mb is the bucket size (DDP's default is 25).
    overlap_grad_reduce: bool = True
    grad_bucket_mb: float = 25.0
    # Packed data folder; empty means <run.dir>/data/packed.
    data_dir: str = ""
    # Mixture weights by language (or source, see mixture_by); empty means natural token proportions.
    mixture: dict[str, float] = field(default_factory=dict)
    mixture_by: str = "language"
    # Held-out data: a packed folder, or else this fraction of the training documents.
    val_dir: str = ""
    val_fraction: float = 0.0
    val_every: int = 0  # steps between validations; 0 means never
    val_batches: int = 2  # micro-batches per language per rank
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    export: ExportSection = field(default_factory=ExportSection)
    on_nonfinite: OnNonFinite = OnNonFinite.stop
    # fp16 with dynamic loss scaling: an overflowed step is skipped and the scale halved; the run
    # stops after this many overflowed steps in a row (0: never), or at an overflow at the minimum scale.
    max_overflow_steps: int = 20
    dist_timeout_s: int = 600  # collectives that wait longer fail instead of hanging
    preflight_timeout_s: int = 120
    prefetch: int = 2  # steps of batches built ahead by the loader thread
    # Record every consumed global sample index per step and rank (samples/rank*.jsonl).
    log_samples: bool = False
    # Raw DeepSpeed keys merged over the generated config, for anything not covered here.
    deepspeed: dict[str, Any] = field(default_factory=dict)
