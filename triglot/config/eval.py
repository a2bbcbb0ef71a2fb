"""Eval section: which suites to score, how (zero/k-shot, scoring mode), and where results go."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalSection:
    suites: list[str] = field(default_factory=list)
    # Root holding the suites in their official layouts.
    benchmarks_dir: str = "../shared/data/benchmarks"
    num_fewshot: int = 0
    # Where results go; empty means <run.dir>/eval.
    output_dir: str = ""
