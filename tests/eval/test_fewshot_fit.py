"""A few-shot prompt too long for eval.max_length loses whole examples, last first, as the suites' own
code does; each question records how many it kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from triglot.eval.runner import run_eval_stage


def _samples(cfg) -> list[dict]:
    out = Path(run_eval_stage(cfg)["out_dir"])
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("policy", ["drop_shots", "truncate_left"])
def test_long_prompts_drop_whole_shots(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config,
                                       policy: str) -> None:
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), num_fewshot=5, max_length=400,
                      subjects=["mmlu/anatomy", "cmmlu/agronomy", "hkcanto-mmlu/anatomy"],
                      long_prompts=policy)
    samples = _samples(cfg)
    tok = AutoTokenizer.from_pretrained(tiny_hf)
    kept = [s["shots"] for s in samples]
    cue = {"mmlu": "\nAnswer:", "cmmlu": "\n答案是：", "hkcanto-mmlu": "\nAnswer:"}
    for s in samples:
        assert s["prompt"].count(cue[s["suite"]]) == s["shots"] + 1  # whole examples only
    if policy == "truncate_left":
        assert set(kept) == {5}
        return
    assert min(kept) < 5 and max(kept) > 0, kept  # some prompts had to lose examples, not all of them
    for s in samples:
        longest = max(len(tok(c, add_special_tokens=False).input_ids) for c in s["continuations"])
        fits = len(tok(s["prompt"]).input_ids) + longest <= 400
        assert fits or s["shots"] == 0
