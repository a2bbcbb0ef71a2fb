"""Generation tasks: HKCanto-Eval's canto-nlp translation, greedy and batched with stop strings, scored
by exact match, chrF and BLEU (sacrebleu) per direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from triglot.eval.generation import cut_at_stop
from triglot.eval.runner import run_eval_stage

DIRECTIONS = {"eng_yue", "yue_eng", "zh_yue", "yue_zh"}


@pytest.fixture(scope="module")
def plain_model(tiny_hf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_hf).eval(), AutoTokenizer.from_pretrained(tiny_hf)


def _plain_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """One prompt, no padding, no stop strings: the batched run must agree after its cut."""
    import torch

    ids = torch.tensor([tokenizer(prompt).input_ids])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    return cut_at_stop(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True), ["\n"]).strip()


def test_translation_scored_with_chrf_by_direction(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config,
                                                   plain_model) -> None:
    import sacrebleu

    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), suites=["hkcanto-translation"], subjects=[],
                      limit_per_subject=3, num_fewshot=1, batch_size=3, max_new_tokens=24)
    out = Path(run_eval_stage(cfg)["out_dir"])
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    gen = res["generation"]["hkcanto-translation"]
    assert set(gen["subjects"]) == DIRECTIONS
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 12 and all(s["kind"] == "generation" and s["shots"] == 1 for s in samples)
    model, tokenizer = plain_model
    for s in samples:
        assert "\n" not in s["prediction"]  # cut at the stop string
        assert s["prediction"] == _plain_greedy(model, tokenizer, s["prompt"], 24), s["source"]
    for direction, table in gen["subjects"].items():
        rows = [s for s in samples if s["subject"] == direction]
        preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
        assert table["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
        tok = "13a" if direction == "yue_eng" else "zh"
        assert table["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs], tokenize=tok).score)
        assert table["exact_match"] == sum(p == r for p, r in zip(preds, refs, strict=True)) / len(rows)
    assert gen["subjects"]["yue_eng"]["target_language"] == "English"
    eng = next(s for s in samples if s["subject"] == "eng_yue")
    assert eng["prompt"].startswith("Translate the following text from English to Cantonese.\n\nEnglish: ")
    assert eng["prompt"].endswith("\nCantonese:")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| hkcanto-translation | test | yue_zh | 3 ⚠ |" in summary and "chrF" in summary
    run_summary = (out.parent / "summary.md").read_text(encoding="utf-8")  # every model of the run
    assert "Generation, chrF" in run_summary and "| hkcanto-translation | eng_yue |" in run_summary


def test_cut_at_stop() -> None:
    assert cut_at_stop("你好\n\nEnglish: x", ["\n"]) == "你好"
    assert cut_at_stop("abc", ["\n", "</s>"]) == "abc"
