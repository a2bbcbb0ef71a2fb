"""Eval test fixtures: a tiny random Llama saved as a Hugging Face folder, and configs that score it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from triglot.config import compose

# A few subjects of every suite, mixing scripts, option counts and prompt templates.
SUBJECTS = ["ceval/computer_network", "ceval/high_school_chinese", "cmmlu/agronomy", "cmmlu/ancient_chinese",
            "mmlu/abstract_algebra", "mmlu/anatomy", "hkcanto-mmlu/anatomy", "hkcanto-cultural/food",
            "hkcanto-linguistic/phonology", "hkcanto-dse/ict_en"]


@pytest.fixture(scope="session")
def benchmarks(shared_data: Path) -> Path:
    return shared_data / "benchmarks"


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory, benchmarks: Path) -> Path:
    from triglot.eval.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "hf", benchmarks, vocab_size=800, max_len=512)


def _eval_config(run_dir: Path, benchmarks: Path, **eval_section: Any) -> Any:
    section = {"benchmarks_dir": str(benchmarks), "subjects": SUBJECTS, "limit_per_subject": 3, "batch_size": 4,
               **eval_section}
    return compose({"defaults": {"hardware": "cpu", "model": "tiny"}, "run": {"name": "evaltest", "dir": str(run_dir)},
                    "tracking": {"mode": "offline"}, "eval": section})


@pytest.fixture
def eval_config() -> Callable[..., Any]:
    """eval_config(run_dir, benchmarks, **eval_section) -> a full config scoring SUBJECTS."""
    return _eval_config
