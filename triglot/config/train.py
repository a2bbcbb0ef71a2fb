"""Train section: optimisation, schedule, data mixture, ZeRO and checkpointing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainSection:
    steps: int = 100
    lr: float = 3e-4
    seq_len: int = 256
    global_batch_size: int = 8
    zero_stage: int = 2
    # Packed data folder; empty means <run.dir>/data/packed.
    data_dir: str = ""
    # Raw DeepSpeed keys merged over the generated config, for anything not covered here.
    deepspeed: dict[str, Any] = field(default_factory=dict)
