"""The eval stage (batched, length-sorted, one pass per question) agrees with a plain one-prompt reference.

Same per-sample log-likelihoods to 1e-4 and the same predictions, in a single process and on 2 ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from triglot.eval.reference import reference_scores
from triglot.eval.runner import run_eval_stage

from triglot.config import save_config


def _samples(out_dir: Path) -> list[dict]:
    with open(out_dir / "samples.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def reference_model(tiny_hf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_hf).eval(), AutoTokenizer.from_pretrained(tiny_hf)


def _check_against_reference(samples: list[dict], reference_model, max_length: int, mode: str) -> None:
    model, tokenizer = reference_model
    ref = reference_scores(model, tokenizer, samples, max_length)
    for sample, ref_lls in zip(samples, ref, strict=True):
        assert sample["loglikelihoods"] == pytest.approx(ref_lls, abs=1e-4), sample["source"]
        scores = ref_lls if mode == "letter" else [ll / len(c) for ll, c in zip(ref_lls, sample["choices"], strict=True)]
        assert sample["prediction"] == sample["letters"][max(range(len(scores)), key=scores.__getitem__)]


@pytest.mark.parametrize(("shots", "mode"), [(0, "letter"), (2, "letter"), (1, "text")])
def test_stage_matches_plain_reference(tmp_path: Path, benchmarks: Path, tiny_hf: Path, reference_model,
                                       eval_config, shots: int, mode: str) -> None:
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), num_fewshot=shots, mode=mode)
    summary = run_eval_stage(cfg)
    samples = _samples(Path(summary["out_dir"]))
    assert len(samples) == summary["counts"]["questions"] == 30
    assert summary["counts"]["skipped_rows"] == 1  # ict_en_test.csv line 1 has answer "Ď"
    assert {s["suite"] for s in samples} == {"ceval", "cmmlu", "mmlu", "hkcanto-mmlu", "hkcanto-cultural",
                                             "hkcanto-linguistic", "hkcanto-dse"}
    # Predictions vary (the model is random, not constant) and some 2-shot prompts exceed 512 tokens.
    assert len({s["prediction"] for s in samples}) > 1
    _check_against_reference(samples, reference_model, 512, mode)
    rows = json.loads((Path(summary["out_dir"]) / "results.json").read_text(encoding="utf-8"))["timing"]["rows"]
    # One row (one forward pass) per question where every continuation is one token, else one per choice.
    assert rows == sum(1 if set(s["num_tokens"]) == {1} else len(s["letters"]) for s in samples)
    if mode == "letter":
        assert all(s["num_tokens"] == [1, 1, 1, 1] for s in samples if len(s["letters"]) == 4)


def test_rerun_is_skipped_and_force_reruns(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config) -> None:
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), subjects=["mmlu/anatomy"])
    first = run_eval_stage(cfg)
    again = run_eval_stage(cfg)
    assert again["stage"] == "eval" and again["counts"] == first["counts"]  # the manifest: skipped
    forced = run_eval_stage(cfg, force=True)
    assert "out_dir" in forced and forced["counts"] == first["counts"]


@pytest.mark.distributed
def test_two_ranks_match_reference(tmp_path: Path, benchmarks: Path, tiny_hf: Path, reference_model,
                                   eval_config, repo_root: Path) -> None:
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), num_fewshot=1)
    config_path = save_config(cfg, tmp_path / "config.yaml")
    from triglot.launch.torchrun import TORCHRUN, torchrun_argv, triglot_target

    cmd = torchrun_argv(2, triglot_target(["eval", str(config_path)]), launcher=TORCHRUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "eval" / tiny_hf.name
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    assert results["timing"]["world_size"] == 2
    samples = _samples(out_dir)
    assert len(samples) == 30
    _check_against_reference(samples, reference_model, 512, "letter")


def test_heldout_perplexity_matches_plain_forward(tmp_path: Path, shared_data: Path, benchmarks: Path,
                                                  tiny_hf: Path, reference_model, eval_config) -> None:
    import math

    import torch

    en = tmp_path / "en.txt"
    en.write_text((shared_data / "corpora/en/en_tinyshakespeare/input.txt").read_text(encoding="utf-8")[:3000],
                  encoding="utf-8")
    yue = shared_data / "corpora/yue/yue_commonvoice/yue_commonvoice_sentences.txt"
    heldout = [{"language": "en", "path": str(en)}, {"language": "yue", "path": str(yue), "max_chars": 2000}]
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), subjects=["mmlu/anatomy"], limit_per_subject=1,
                      heldout=heldout, max_length=128)
    ppl = json.loads((Path(run_eval_stage(cfg)["out_dir"]) / "results.json").read_text(encoding="utf-8"))["perplexity"]
    model, tokenizer = reference_model
    for lang, text in (("en", en.read_text(encoding="utf-8")), ("yue", yue.read_text(encoding="utf-8")[:2000])):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        nll = 0.0
        for start in range(0, len(ids), 127):  # windows of 127 text tokens after BOS
            window = [tokenizer.bos_token_id] + ids[start:start + 127]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([window])).logits[0].float(), -1)
            nll -= float(logp[:-1].gather(1, torch.tensor(window[1:])[:, None]).sum())
        assert ppl[lang]["tokens"] == len(ids) and ppl[lang]["characters"] == len(text)
        assert ppl[lang]["perplexity"] == pytest.approx(math.exp(nll / len(ids)), rel=1e-5)
        assert ppl[lang]["bits_per_character"] == pytest.approx(nll / math.log(2) / len(text), rel=1e-5)
