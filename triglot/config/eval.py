"""Eval section: which suites to score, how (zero/k-shot, scoring mode), and where results go."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ScoreMode(str, Enum):
    # Log-likelihood of the answer letter after the prompt (one forward pass per question when
    # every letter is one token).
    letter = "letter"
    # Log-likelihood of the full answer text, divided by its length in characters.
    text = "text"


class LongPrompts(str, Enum):
    # Remove whole examples, last first, until the prompt fits (the suites' official code).
    drop_shots = "drop_shots"
    # Cut tokens from the left.
    truncate_left = "truncate_left"


@dataclass
class HeldoutText:
    # Language tag the perplexity and bits per character are reported under (en, zh-Hans, yue, ...).
    language: str = ""
    # A .txt file (whole text), .jsonl (one record a line) or .csv file (with a header).
    path: str = ""
    # Field (jsonl) or column (csv) holding the text; ignored for .txt.
    field: str = "text"
    # Score only the first N characters (0: the whole file).
    max_chars: int = 0


@dataclass
class EvalSection:
    # Suite names (configs/eval/<name>.yaml, or a folder of eval.suite_dirs) or paths to suite YAML
    # files; empty means every suite file marked `default: true` (C-Eval, CMMLU, MMLU, HKCanto-Eval).
    suites: list[str] = field(default_factory=list)
    # Further folders searched for <name>.yaml before configs/eval.
    suite_dirs: list[str] = field(default_factory=list)
    # Prompt template of every suite: "official" (the suite's own evaluation code) or "lm-eval"
    # (lm-evaluation-harness's stock task, where the suite file has one).
    template: str = "official"
    # Root holding the suites in their official layouts.
    benchmarks_dir: str = "../shared/data/benchmarks"
    # Split scored per suite where it differs from the suite's default (C-Eval: val, others: test).
    # C-Eval's test split has no answers: scoring it writes ceval_submission.json instead of accuracy.
    splits: dict[str, str] = field(default_factory=dict)
    # Only these subjects ("subject" or "suite/subject"); empty means all.
    subjects: list[str] = field(default_factory=list)
    # Score at most this many questions per subject, taken in file order (0: all). Quick runs use it.
    limit_per_subject: int = 0
    # Examples from the dev split put before each question (0: zero-shot).
    num_fewshot: int = 0
    mode: ScoreMode = ScoreMode.letter
    # Sequences per forward pass (0: the hardware profile's micro_batch_size times 4).
    batch_size: int = 0
    # Longest input in tokens (0: the model's limit).
    max_length: int = 0
    # A few-shot prompt longer than max_length: "drop_shots" removes whole examples, last first, as the
    # suites' official code does (each question records how many it kept); "truncate_left" cuts tokens
    # from the left. A prompt still too long with no example left is cut from the left.
    long_prompts: LongPrompts = LongPrompts.drop_shots
    # Generation tasks: most tokens generated per answer (0: the suite file's generation.max_new_tokens).
    max_new_tokens: int = 0
    # Held-out text for perplexity and bits per character, per language.
    heldout: list[HeldoutText] = field(default_factory=list)
    # Checkpoint or Hugging Face folder to score; empty: the run's newest complete checkpoint,
    # else <run.dir>/export.
    checkpoint: str = ""
    # Where results go; empty means <run.dir>/eval. Each checkpoint gets a folder below it.
    output_dir: str = ""
    # `triglot eval --watch`: seconds between looks for new checkpoints, and how long to wait
    # without a new one before stopping (0: stop once the run's export/ folder exists).
    watch_interval_s: float = 30.0
    watch_idle_timeout_s: float = 0.0
