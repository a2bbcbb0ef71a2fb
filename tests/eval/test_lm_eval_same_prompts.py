"""lm-evaluation-harness, given task YAMLs that rebuild triglot's own prompts, scores as triglot's eval does.

bench/bench_eval.py times triglot against lm-eval's HF backend on these tasks; this checks, on a few questions
of suites with different templates, that the two do the same work: the same context and continuations for
every question, every per-choice log-likelihood within 1e-4, the same prediction. lm-eval is a dev
dependency (CI installs it); the test is skipped only where it is not importable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from triglot.eval.runner import run_eval_stage
from triglot.eval.tasks import load_suites

from bench.bench_eval import LL_TOLERANCE, compare_samples, run_lm_eval, write_lm_eval_tasks

pytest.importorskip("lm_eval")

# Official templates of four suites: Chinese header and cue, English with a space before the letter,
# HKCanto-Eval's Cantonese frame, and a bilingual DSE subject.
SUBJECTS = ["ceval/computer_network", "mmlu/anatomy", "hkcanto-cultural/food", "hkcanto-dse/bio_en"]
LIMIT = 3


def test_lm_eval_on_triglot_prompts_scores_the_same(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), subjects=SUBJECTS, limit_per_subject=LIMIT,
                      suites=sorted({s.split("/")[0] for s in SUBJECTS}))
    out = Path(run_eval_stage(cfg)["out_dir"])
    ours = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(ours) == LIMIT * len(SUBJECTS)

    tasks = write_lm_eval_tasks(load_suites(cfg.eval), tmp_path / "tasks")
    theirs = run_lm_eval(tiny_hf, tmp_path / "tasks", tasks, int(cfg.eval.batch_size), 512)["out"]
    check = compare_samples(ours, theirs)
    assert check["questions"] == len(ours)
    assert check["text_diffs"] == []
    assert check["worst_ll_diff"] <= LL_TOLERANCE
    assert check["prediction_diffs"] == []
