"""The built-in suites, now defined by YAML files, read, prompt and score exactly as the Python classes did.

tests/eval/data/builtin_snapshot.json was written by `snapshot()` below with the code before the suites
became YAML: per subject its prompt name and categories, per split the rows loaded and skipped, and per
question (first two of every subject) a hash of the 0-shot and 2-shot letter prompts and of the text-mode
continuations. The tiny model's per-question log-likelihoods and predictions for the conftest subjects
(1-shot, letter) were recorded the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from triglot.eval.runner import run_eval_stage
from triglot.eval.suites import LoadReport, open_suite
from triglot.eval.tasks import LoadedSuite, build_requests

SNAPSHOT = Path(__file__).parent / "data" / "builtin_snapshot.json"
BUILTIN = ["ceval", "cmmlu", "mmlu", "hkcanto-mmlu", "hkcanto-cultural", "hkcanto-dse", "hkcanto-law",
           "hkcanto-linguistic"]


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def snapshot(benchmarks: Path) -> dict:
    out: dict = {}
    for name in BUILTIN:
        suite = open_suite(name, benchmarks)
        entry: dict = {"language": suite.language, "subjects": {}, "splits": {}}
        splits = ["dev", "val", "test"] if name == "ceval" else ["dev", "test"]
        for split in splits:
            report = LoadReport()
            rows = sum(len(suite.load(s, split, report)) for s in suite.subjects())
            entry["splits"][split] = {"rows": rows, "skipped": [(Path(r["file"]).name, r["line"], r["reason"])
                                                                for r in report.skipped]}
        split = "val" if name == "ceval" else "test"
        for subject in suite.subjects():
            questions = suite.load(subject, split, LoadReport())[:2]
            loaded = LoadedSuite(suite, split, questions, LoadReport())
            zero = build_requests(loaded, 0, "letter")
            two = build_requests(loaded, 2, "letter")
            text = build_requests(loaded, 0, "text")
            entry["subjects"][subject] = {
                "name": suite.subject_name(subject), "categories": suite.categories(subject),
                "questions": [{"id": a.question.qid, "gold": a.question.answer, "letters": list(a.letters),
                               "zero": _h(a.prompt), "two": _h(b.prompt), "conts": list(a.continuations),
                               "text": _h(json.dumps(c.continuations, ensure_ascii=False))}
                              for a, b, c in zip(zero, two, text, strict=True)]}
        out[name] = entry
    return out


def _scores(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config) -> list[dict]:
    # Left truncation, as the code the snapshot was taken with did (drop_shots changes long prompts).
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), num_fewshot=1, long_prompts="truncate_left")
    out_dir = Path(run_eval_stage(cfg)["out_dir"])
    with open(out_dir / "samples.jsonl", encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh]
    return [{"source": Path(s["source"]).name, "prompt": _h(s["prompt"]), "loglikelihoods": s["loglikelihoods"],
             "prediction": s["prediction"], "gold": s["gold"]} for s in samples]


def test_builtin_suites_read_and_prompt_as_before(benchmarks: Path) -> None:
    want = json.loads(SNAPSHOT.read_text(encoding="utf-8"))["suites"]
    got = json.loads(json.dumps(snapshot(benchmarks)))  # tuples to lists, as stored
    assert set(got) == set(want)
    for name in want:
        assert got[name]["splits"] == want[name]["splits"], name
        assert got[name]["language"] == want[name]["language"], name
        assert got[name]["subjects"] == want[name]["subjects"], name


def test_builtin_suites_score_as_before(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config) -> None:
    want = json.loads(SNAPSHOT.read_text(encoding="utf-8"))["scores"]
    got = _scores(tmp_path, benchmarks, tiny_hf, eval_config)
    assert len(got) == len(want) == 30
    for g, w in zip(got, want, strict=True):
        assert (g["source"], g["prompt"], g["prediction"], g["gold"]) == (w["source"], w["prompt"], w["prediction"],
                                                                          w["gold"])
        assert g["loglikelihoods"] == pytest.approx(w["loglikelihoods"], abs=1e-4), g["source"]


if __name__ == "__main__" and os.environ.get("TRIGLOT_WRITE_SNAPSHOT"):
    # Rewrites the snapshot: only with code known to score as the reference does.
    import sys
    import tempfile

    from triglot.eval.tiny_model import save_tiny_model

    from tests.eval.conftest import _eval_config

    bench = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_tiny_model(Path(tmp) / "hf", bench, vocab_size=800, max_len=512)
        data = {"suites": snapshot(bench), "scores": _scores(Path(tmp), bench, tiny, _eval_config)}
    SNAPSHOT.write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")
