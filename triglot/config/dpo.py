"""DPO section: preference pairs, the preference loss, the reference model and LoRA for preference tuning.

Every default of preference tuning lives here; YAML files hold only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triglot.config.sft import LoraSection


@dataclass
class DpoDatasetSpec:
    name: str = "???"
    # Local JSON or JSONL files (globs).
    paths: list[str] = field(default_factory=list)
    # sharegpt: `conversations` (from/value turns ending with the user's) with `chosen` and `rejected`
    # answers ({from, value} or a plain string); prompt: plain-text `prompt`, `chosen`, `rejected`.
    format: str = "sharegpt"
    # Share of pairs drawn from this dataset, relative to the others' weights.
    weight: float = 1.0
    # Label for per-language metrics (en, zh-Hans, zh-Hant, yue, ...); empty means the dataset's name.
    language: str = ""
    # Field names where a file differs from the usual ones; keys: conversations, chosen, rejected, prompt,
    # system, from, value.
    fields: dict[str, str] = field(default_factory=dict)
    # System prompt for this dataset's prompts that have none; empty: dpo.system_prompt.
    system_prompt: str = ""
    # Use at most this many pairs (the first usable ones in file order); 0 means all.
    max_samples: int = 0


@dataclass
class DpoSection:
    datasets: list[DpoDatasetSpec] = field(default_factory=list)
    # sigmoid (DPO, Rafailov et al. 2023), ipo (Azar et al. 2023, length-averaged log-probs) or
    # simpo (Meng et al. 2024: reference-free, length-averaged, margin dpo.simpo_gamma).
    loss: str = "sigmoid"
    beta: float = 0.1
    # Conservative DPO / robust label smoothing: the chance that a pair's preference label is flipped.
    label_smoothing: float = 0.0
    # SimPO's target reward margin.
    simpo_gamma: float = 0.5
    # precomputed: reference log-probs of every pair computed once by the starting model, before training,
    # and stored in <checkpoints>/reference/; live: computed at every step by the model with its LoRA
    # adapters disabled (LoRA only: the base is the reference, no second copy of the model).
    reference: str = "precomputed"
    # auto: the tokenizer's own chat template, else chatml; or tokenizer, chatml, llama3, qwen.
    template: str = "auto"
    # System prompt added to prompts that have none; empty means none.
    system_prompt: str = ""
    # Several pairs per training sequence (positions restart per answer); else one pair each.
    pack: bool = True
    # A pair whose chosen + rejected sequences exceed train.seq_len: the prompt is cut from the left and
    # then the answers from the right (truncate), or the pair is left out (drop).
    overlong: str = "truncate"
    lora: LoraSection = field(default_factory=LoraSection)
    # `triglot run`'s dpo stage: the model to start from (empty: <run.dir>/sft/export when the run has
    # an sft stage, else <run.dir>/export) and train-section keys that differ (steps, lr, ...).
    # It writes to <run.dir>/dpo/.
    init_from: str = ""
    train: dict[str, Any] = field(default_factory=dict)
