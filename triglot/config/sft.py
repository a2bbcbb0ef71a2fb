"""SFT section: chat datasets, templates, loss masking and LoRA for supervised fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SftDatasetSpec:
    name: str = "???"
    # Local JSON or JSONL files (globs).
    paths: list[str] = field(default_factory=list)
    # alpaca, sharegpt or messages
    format: str = "alpaca"
    weight: float = 1.0


@dataclass
class SftSection:
    datasets: list[SftDatasetSpec] = field(default_factory=list)
