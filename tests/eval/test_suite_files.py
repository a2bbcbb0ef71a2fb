"""Suites defined by YAML files: a new layout loads and scores from its file alone; every mistake in a
suite file is found when the suites load (exit 2, file and key named); bad rows are counted per file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from triglot.eval.runner import run_eval_stage
from triglot.eval.tasks import load_suites

from triglot.config import save_config
from triglot.errors import ConfigError, InputError


def _mmlu_rows(benchmarks: Path, subject: str, split: str) -> list[list[str]]:
    with open(benchmarks / "mmlu" / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def make_jsonl_suite(benchmarks: Path, root: Path) -> Path:
    """MMLU rows re-shaped as a layout nobody here has read: one JSONL file per split holding every
    subject, choices as a list, the answer as an index, the subject as a field."""
    for split in ("dev", "test"):
        (root / "newsuite").mkdir(parents=True, exist_ok=True)
        with open(root / "newsuite" / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for subject in ("anatomy", "astronomy"):
                for row in _mmlu_rows(benchmarks, subject, split)[:5]:
                    fh.write(json.dumps({"q": row[0], "options": row[1:5], "label": "ABCD".index(row[5]),
                                         "topic": subject}) + "\n")
    spec = {
        "name": "newsuite", "language": "en", "script": "Latin", "folder": "newsuite",
        "files": {"dev": "dev.jsonl", "test": "test.jsonl"}, "format": "jsonl",
        "fields": {"question": "q", "choices": "options", "answer": "label", "subject": "topic"},
        "answer_format": "index", "subject_names": "words",
        "categories": {"subjects": {"anatomy": "health", "astronomy": ["STEM"]}},
        "templates": {"official": {"source": "a test", "header": "Questions about {subject}.\n\n",
                                   "answer_cue": "\nAnswer:", "answer_sep": " "}},
    }
    path = root / "suites" / "newsuite.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def test_a_new_suite_loads_and_scores_from_its_yaml_file(tmp_path: Path, benchmarks: Path, tiny_hf: Path,
                                                         eval_config) -> None:
    root = tmp_path / "bench"
    make_jsonl_suite(benchmarks, root)
    with open(root / "newsuite" / "test.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"q": "?", "options": ["a", "b"], "label": 7, "topic": "anatomy"}) + "\n")
        fh.write("not json\n")
    cfg = eval_config(tmp_path, root, checkpoint=str(tiny_hf), suites=["newsuite"], subjects=[],
                      suite_dirs=[str(root / "suites")], limit_per_subject=0, num_fewshot=1)
    out = Path(run_eval_stage(cfg)["out_dir"])
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    scores = res["scores"]["newsuite"]
    assert scores["overall"]["questions"] == 10 and set(scores["subjects"]) == {"anatomy", "astronomy"}
    assert set(scores["categories"]) == {"health", "STEM"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    first = samples[0]
    assert first["prompt"].startswith("Questions about anatomy.\n\n") and first["prompt"].count("\nAnswer:") == 2
    want = _mmlu_rows(benchmarks, "anatomy", "test")[0][5]
    assert first["gold"] == want
    # Both bad rows are counted once, under their file; no row is listed one by one.
    assert res["skipped_rows"]["newsuite"] == {str(root / "newsuite" / "test.jsonl"): {
        "rows": 2, "first_line": 11, "first_reason": "answer index 7 out of range"}}


def _suite(tmp_path: Path, benchmarks: Path, **change) -> tuple[Path, Path]:
    root = tmp_path / "bench"
    path = make_jsonl_suite(benchmarks, root)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in change.items():
        target = spec
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        if value is None:
            del target[last]
        else:
            target[last] = value
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return root, path


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"formt": "csv"}, ConfigError, "unknown key 'formt' (did you mean 'format'?)"),
    ({"files.test": "missing/test.jsonl"}, InputError, "files.test: no file matches"),
    ({"fields.question": "question"}, InputError, "matches 'fields' (missing question or choices)"),
    ({"answer_format": "letter"}, InputError, "is not one of A, B, C, D); check fields"),
    ({"categories": {"subjects": {"anatomy": "health"}}}, ConfigError, "categories: subject 'astronomy'"),
    ({"templates.official.answer_cue": None}, ConfigError, "templates.official: missing key 'answer_cue'"),
    ({"format": "xml"}, ConfigError, "format 'xml' is not one of"),
])
def test_suite_file_mistakes_are_found_when_suites_load(tmp_path: Path, benchmarks: Path, eval_config,
                                                        change: dict, error: type, message: str) -> None:
    root, path = _suite(tmp_path, benchmarks, **change)
    cfg = eval_config(tmp_path, root, suites=["newsuite"], subjects=[], suite_dirs=[str(path.parent)])
    with pytest.raises(error) as info:
        load_suites(cfg.eval)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unknown_suite_and_template_are_config_errors(tmp_path: Path, benchmarks: Path, eval_config) -> None:
    with pytest.raises(ConfigError, match="unknown suite 'cmmlu2'.*did you mean 'cmmlu'"):
        load_suites(eval_config(tmp_path, benchmarks, suites=["cmmlu2"], subjects=[]).eval)
    with pytest.raises(ConfigError, match="hkcanto-law.yaml: no template 'lm-eval'"):
        load_suites(eval_config(tmp_path, benchmarks, suites=["hkcanto-law"], subjects=[], template="lm-eval").eval)


def test_cli_exits_2_naming_the_file_before_any_model_loads(tmp_path: Path, benchmarks: Path, eval_config,
                                                            repo_root: Path) -> None:
    root, path = _suite(tmp_path, benchmarks, **{"fields.choices": "choices"})
    # No checkpoint exists: the suite file's error must come first.
    cfg = eval_config(tmp_path, root, suites=["newsuite"], subjects=[], suite_dirs=[str(path.parent)],
                      checkpoint=str(tmp_path / "no-such-model"))
    config = save_config(cfg, tmp_path / "config.yaml")
    proc = subprocess.run([sys.executable, "-m", "triglot", "eval", str(config)], cwd=repo_root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(path) in proc.stderr and "fields" in proc.stderr and "Traceback" not in proc.stderr
