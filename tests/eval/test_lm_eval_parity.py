"""The `lm-eval` template scores as lm-evaluation-harness's stock tasks do.

lm-eval runs its own task definitions (ceval-valid, cmmlu, mmlu: the YAML files it ships), only pointed
at the local copies of the suites, on the tiny model; triglot's eval stage with eval.template=lm-eval
must give the same log-likelihood for every choice and the same accuracy. lm-eval is a dev dependency
(CI installs it); the test is skipped only where it is not importable.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from triglot.eval.runner import run_eval_stage

lm_eval = pytest.importorskip("lm_eval")

LIMIT = 4
# suite, subject, lm-eval task, the stock file it includes, split
TASKS = [("ceval", "computer_network", "ceval-valid_computer_network", "ceval/_default_ceval_yaml", "val"),
         ("cmmlu", "agronomy", "cmmlu_agronomy", "cmmlu/_default_template_yaml", "test"),
         ("mmlu", "anatomy", "mmlu_anatomy", "mmlu/default/_default_template_yaml", "test")]


def _mmlu_as_hf(benchmarks: Path, subject: str, split: str, out: Path) -> Path:
    """cais/mmlu's fields (question, choices, answer index) from the local CSV, row for row."""
    path = out / f"mmlu_{subject}_{split}.jsonl"
    with open(benchmarks / "mmlu" / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as fh, \
            open(path, "w", encoding="utf-8") as dst:
        for row in csv.reader(fh):
            dst.write(json.dumps({"question": row[0], "choices": row[1:5], "answer": "ABCD".index(row[5].strip()),
                                  "subject": subject}, ensure_ascii=False) + "\n")
    return path


def _task_files(benchmarks: Path, out: Path) -> Path:
    """One task YAML per subject: the stock task's own file (included unchanged) and its stock description,
    with only dataset_path and data_files pointing here."""
    stock = Path(lm_eval.__file__).parent / "tasks"
    folder = out / "tasks"
    folder.mkdir(parents=True)
    for suite, subject, task, include, split in TASKS:
        own = yaml.safe_load((stock / Path(include).parent / f"{task}.yaml").read_text(encoding="utf-8"))
        if suite == "mmlu":
            files = {s: str(_mmlu_as_hf(benchmarks, subject, s, out)) for s in ("dev", split)}
            path = "json"
        else:
            rel = {"ceval": "ceval/{s}/" + subject + "_{s}.csv", "cmmlu": "cmmlu/data/{s}/" + subject + ".csv"}[suite]
            files = {s: str(benchmarks / rel.format(s=s)) for s in ("dev", split)}
            path = "csv"
        spec = {"include": str(stock / include), "task": task, "description": own["description"],
                "dataset_path": path, "dataset_name": None, "dataset_kwargs": {"data_files": files}}
        (folder / f"{task}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return folder


def _lm_eval_scores(tiny_hf: Path, folder: Path, shots: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # The tiny tokenizer adds BOS to every encoding, as triglot's scoring does; lm-eval must too.
    model = HFLM(pretrained=str(tiny_hf), batch_size=4, device="cpu", add_bos_token=True, dtype="float32")
    out = simple_evaluate(model=model, tasks=[t[2] for t in TASKS], num_fewshot=shots, limit=LIMIT,
                          task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                          log_samples=True, bootstrap_iters=0)
    return out


@pytest.mark.parametrize("shots", [0, 1])
def test_lm_eval_template_scores_as_lm_eval(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config,
                                            monkeypatch: pytest.MonkeyPatch, shots: int) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    theirs = _lm_eval_scores(tiny_hf, _task_files(benchmarks, tmp_path), shots)
    cfg = eval_config(tmp_path, benchmarks, checkpoint=str(tiny_hf), template="lm-eval", num_fewshot=shots,
                      suites=[t[0] for t in TASKS],
                      subjects=[f"{s}/{subj}" for s, subj, *_ in TASKS], limit_per_subject=LIMIT)
    out = Path(run_eval_stage(cfg)["out_dir"])
    ours = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["settings"]["template"] == "lm-eval"
    for suite, subject, task, _, _ in TASKS:
        mine = [s for s in ours if s["suite"] == suite and s["subject"] == subject]
        samples = sorted(theirs["samples"][task], key=lambda s: s["doc_id"])
        assert len(mine) == len(samples) == LIMIT
        for m, t in zip(mine, samples, strict=True):
            # The same text: context and each continuation (" A", ...), lm-eval's target delimiter included.
            assert [m["prompt"]] * len(m["continuations"]) == [a[0] for a in t["arguments"]], (task, t["doc_id"])
            assert m["continuations"] == [a[1] for a in t["arguments"]], (task, t["doc_id"])
            lls = [float(r[0]) for r in t["filtered_resps"]]
            assert m["loglikelihoods"] == pytest.approx(lls, abs=1e-5), (task, t["doc_id"])
            assert m["correct"] == bool(t["acc"]), (task, t["doc_id"])
        acc = theirs["results"][task]["acc,none"]
        assert res["scores"][suite]["subjects"][subject]["accuracy"] == pytest.approx(acc)
