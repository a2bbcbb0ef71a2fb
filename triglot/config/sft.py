"""SFT section: chat datasets, templates, loss masking and LoRA for supervised fine-tuning.

Every default of fine-tuning, chatting and generation lives here; YAML files hold only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SftDatasetSpec:
    name: str = "???"
    # Local JSON or JSONL files (globs).
    paths: list[str] = field(default_factory=list)
    # alpaca (instruction, input, output), sharegpt (conversations of from/value) or messages (role/content)
    format: str = "alpaca"
    # Share of conversations drawn from this dataset, relative to the others' weights.
    weight: float = 1.0
    # Label for per-language metrics (en, zh-Hans, zh-Hant, yue, ...); empty means the dataset's name.
    language: str = ""
    # Field names where a file differs from the format's usual ones, e.g. {instruction: en_instruction,
    # input: en_input, output: en_output}; keys: instruction, input, output, system, history,
    # conversations, messages, role, content.
    fields: dict[str, str] = field(default_factory=dict)
    # System prompt for this dataset's conversations that have none; empty: sft.system_prompt.
    system_prompt: str = ""
    # Use at most this many conversations (the first ones in file order); 0 means all.
    max_samples: int = 0


@dataclass
class LoraSection:
    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    # Module names (suffixes) that get adapters; Llama-family projections by default.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # Modules trained in full next to the adapters (e.g. embed_tokens, lm_head when tokens were added).
    modules_to_save: list[str] = field(default_factory=list)
    # Hugging Face exports merge the adapter into the base weights (a plain model, no peft needed).
    merge_on_export: bool = True


@dataclass
class GenerationSection:
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    seed: int = 0


@dataclass
class SftSection:
    datasets: list[SftDatasetSpec] = field(default_factory=list)
    # auto: the tokenizer's own chat template, else chatml; or tokenizer, chatml, llama3, qwen.
    template: str = "auto"
    # System prompt added to conversations that have none; empty means none.
    system_prompt: str = ""
    # Several conversations per training sequence (positions restart per conversation); else one each.
    pack: bool = True
    # Conversations longer than train.seq_len are cut (truncate) or left out (drop).
    overlong: str = "truncate"
    lora: LoraSection = field(default_factory=LoraSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    # `triglot run`'s sft stage: the model to start from (empty: <run.dir>/export, the pretraining export)
    # and train-section keys that differ for fine-tuning (steps, lr, ...). It writes to <run.dir>/sft/.
    init_from: str = ""
    train: dict[str, Any] = field(default_factory=dict)
