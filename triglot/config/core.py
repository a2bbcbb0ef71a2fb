"""Config sections every stage shares: the run itself, run tracking and the hardware profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"  # with dynamic loss scaling
    bf16 = "bf16"


class Attention(str, Enum):
    eager = "eager"
    sdpa = "sdpa"  # torch's scaled_dot_product_attention; packed documents get a block-diagonal mask tensor
    flex_attention = "flex_attention"  # torch's FlexAttention: packed documents as a block-sparse mask (GPU only)
    flash_attention_2 = "flash_attention_2"  # needs the flash-attn package (GPU only)


class WandbMode(str, Enum):
    auto = "auto"  # online when WANDB_API_KEY is set, offline otherwise
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class RunSection:
    name: str = "run"
    # Output root; every stage writes a folder below it (data/clean, tokenizer, data/packed, checkpoints, eval).
    dir: str = "runs/${run.name}"
    seed: int = 1234
    # Stages `triglot run` executes, in order.
    stages: list[str] = field(default_factory=lambda: ["clean", "tokenizer", "pack", "train", "eval"])
    # Processes per node for distributed stages (train, eval) when launched by `triglot run`.
    nproc_per_node: int = 1
    tags: list[str] = field(default_factory=list)


@dataclass
class TrackingSection:
    mode: WandbMode = WandbMode.auto
    project: str = "triglot"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    # Also write <stage dir>/metrics.jsonl (always on; here so a run may rename it).
    metrics_file: str = "metrics.jsonl"


@dataclass
class HardwareSection:
    # Profile name from configs/hardware/, or "auto" to detect the local device.
    name: str = "auto"
    vendor: str = ""
    description: str = ""
    # DeepSpeed accelerator name for this family: cpu, cuda, npu, hpu, xpu.
    accelerator: str = "cpu"
    precision: Precision = Precision.fp32
    # fp16 only: 0 means dynamic loss scaling.
    loss_scale: float = 0.0
    initial_scale_power: int = 16
    attention: Attention = Attention.sdpa
    # torch.distributed backend: gloo, nccl (also RCCL on ROCm), hccl, ccl, xccl; or auto, which asks
    # DeepSpeed's accelerator at run time (on XPU: ccl with oneccl_bindings_for_pytorch installed, else xccl).
    comm_backend: str = "gloo"
    # Dense peak throughput per precision, TFLOP/s per device, from the vendor datasheet.
    peak_tflops: dict[str, float] = field(default_factory=dict)
    memory_gb: float = 0.0
    devices_per_node: int = 1
    micro_batch_size: int = 1
    activation_checkpointing: bool = False
    compile: bool = False
    # Environment variables the launcher sets for this family (communication library tuning).
    env: dict[str, str] = field(default_factory=dict)
    # True only for profiles that have run on real hardware in this project's tests.
    tested: bool = False
