"""Eval stage throughput against lm-evaluation-harness (HF backend) scoring the same prompts, model and batch size.

The bench writes lm-eval task YAMLs that rebuild triglot's prompts from the suite rows (header as the task's
description, question and options in a Jinja template, the template's separator as the target delimiter),
runs both, and checks every context, continuation, log-likelihood (1e-4) and prediction agree.

Run: .venv/bin/python -m bench.bench_eval   (updates the bench_eval section of docs/BENCHMARKS.md; --smoke prints)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.report import goal, machine_description, markdown_table, publish, versions

GOAL = 1.2
SUBJECTS = ["ceval/computer_network", "ceval/law", "cmmlu/agronomy", "cmmlu/chinese_history", "mmlu/anatomy",
            "mmlu/marketing", "hkcanto-mmlu/anatomy", "hkcanto-cultural/food", "hkcanto-law/basic_law",
            "hkcanto-dse/bio_en"]
LL_TOLERANCE = 1e-4


# ---- lm-eval tasks that rebuild triglot's prompts ------------------------------------------------


def _raw(text: str) -> str:
    """A literal piece of a Jinja template (the prompt's own text, braces and all)."""
    return "{% raw %}" + text + "{% endraw %}" if text else ""


def _jinja_block(template: Any) -> str:
    """PromptTemplate.block (no answer) as Jinja over a row with question, passage, choices and letters."""
    before, _, after = template.passage.partition("{passage}")
    question = "{{question.strip()}}" if template.strip_question else "{{question}}"
    option = template.option.replace("{letter}", "\0L").replace("{text}", "\0T")
    option_jinja = "".join("{{letters[loop.index0]}}" if p == "L" else "{{c}}" if p == "T" else _raw(p)
                           for p in re.split(r"\0([LT])", option))
    return ("{% if passage %}" + _raw(before) + "{{passage}}" + _raw(after) + "{% endif %}"
            + _raw(template.question_prefix) + question
            + "{% for c in choices %}" + option_jinja + "{% endfor %}" + _raw(template.answer_cue))


def task_name(suite: str, subject: str) -> str:
    return "triglot_" + re.sub(r"\W", "_", f"{suite}_{subject}")


def write_lm_eval_tasks(loaded: list, folder: Path) -> list[str]:
    """One zero-shot lm-eval task per subject, over the rows triglot loaded (same questions, same order)."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks = []
    for ls in loaded:
        suite = ls.suite
        if suite.answer_format == "text":
            raise ValueError(f"{suite.name}: text-mode suites are not rebuilt here (letter scoring only)")
        by_subject: dict[str, list] = {}
        for q in ls.questions:
            by_subject.setdefault(q.subject, []).append(q)
        for subject, questions in by_subject.items():
            name = task_name(suite.name, subject)
            rows = folder / f"{name}.jsonl"
            with open(rows, "w", encoding="utf-8") as fh:
                for q in questions:
                    letters = list(suite.letters[: len(q.choices)])
                    fh.write(json.dumps({"qid": q.qid, "question": q.question, "passage": q.passage,
                                         "choices": list(q.choices), "letters": letters,
                                         "answer": letters.index(q.answer)}, ensure_ascii=False) + "\n")
            t = suite.template
            header = t.header.format(subject=suite.subject_name(subject), note=t.zero_shot_note)
            spec = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(rows)}},
                    "test_split": "test", "output_type": "multiple_choice", "description": _raw(header),
                    "doc_to_text": _jinja_block(t), "doc_to_choice": "{{letters}}", "doc_to_target": "answer",
                    "target_delimiter": t.answer_sep, "metric_list": [{"metric": "acc"}], "metadata": {"version": 1}}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
            tasks.append(name)
    return tasks


def run_lm_eval(hf: Path, folder: Path, tasks: list[str], batch_size: int, max_length: int) -> dict:
    """lm-eval's HF backend on the local model folder (CPU, fp32, BOS added as triglot's tokenizer does).

    Returns its output, the end-to-end seconds (model load included) and the seconds inside loglikelihood.
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    model = HFLM(pretrained=str(hf), batch_size=batch_size, device="cpu", dtype="float32", add_bos_token=True,
                 max_length=max_length)
    scoring = [0.0]
    score = model.loglikelihood

    def timed_loglikelihood(requests, *args, **kwargs):  # the real call, timed
        t0 = time.perf_counter()
        out = score(requests, *args, **kwargs)
        scoring[0] += time.perf_counter() - t0
        return out

    model.loglikelihood = timed_loglikelihood
    out = simple_evaluate(model=model, tasks=tasks, num_fewshot=0, log_samples=True, bootstrap_iters=0,
                          task_manager=TaskManager(include_path=str(folder), include_defaults=False))
    return {"out": out, "seconds": time.perf_counter() - start, "scoring_seconds": scoring[0]}


def compare_samples(ours: list[dict], theirs: dict) -> dict:
    """Per question: same context and continuations, log-likelihoods within LL_TOLERANCE, same prediction."""
    mine = {(s["suite"], s["subject"], s["id"]): s for s in ours}
    by_task = {task_name(s, subj): (s, subj) for s, subj, _ in mine}
    worst, text_diffs, pred_diffs, seen = 0.0, [], [], 0
    for task, samples in theirs["samples"].items():
        suite, subject = by_task[task]
        for t in samples:
            m = mine[(suite, subject, t["doc"]["qid"])]
            seen += 1
            lls = [float(r[0]) for r in t["filtered_resps"]]
            if [a[0] for a in t["arguments"]] != [m["prompt"]] * len(lls) or \
                    [a[1] for a in t["arguments"]] != m["continuations"]:
                text_diffs.append((task, t["doc"]["qid"]))
            worst = max([worst, *(abs(a - b) for a, b in zip(m["loglikelihoods"], lls, strict=True))])
            if m["letters"][max(range(len(lls)), key=lambda i: lls[i])] != m["prediction"]:
                pred_diffs.append((task, t["doc"]["qid"]))
    return {"questions": seen, "of": len(ours), "worst_ll_diff": worst, "text_diffs": text_diffs,
            "prediction_diffs": pred_diffs}


# ---- the benchmark -------------------------------------------------------------------------------


def eval_config(tmp: Path, hf: Path, benchmarks: str, per_subject: int) -> Any:
    from triglot.config import compose

    return compose({"defaults": {"hardware": "cpu"}, "run": {"dir": str(tmp / "run")}, "tracking": {"mode": "disabled"},
                    "eval": {"benchmarks_dir": benchmarks, "subjects": SUBJECTS, "checkpoint": str(hf),
                             "suites": sorted({s.split("/")[0] for s in SUBJECTS}),
                             "limit_per_subject": per_subject}})


def run_triglot(cfg: Any) -> dict:
    from triglot.eval.runner import run_eval_stage

    start = time.perf_counter()
    summary = run_eval_stage(cfg, force=True)
    seconds = time.perf_counter() - start  # everything: suites, model load, scoring, outputs
    out_dir = Path(summary["out_dir"])
    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    timing = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))["timing"]
    return {"samples": samples, "seconds": seconds, "scoring_seconds": timing["scoring_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-subject", type=int, default=200, help="questions per subject (200: 1,047 in all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each side's best is kept")
    parser.add_argument("--benchmarks", default=str(Path(__file__).resolve().parents[2] / "shared/data/benchmarks"))
    parser.add_argument("--smoke", action="store_true", help="10 questions per subject, one round; prints only")
    args = parser.parse_args()
    per_subject, rounds = (10, 1) if args.smoke else (args.per_subject, args.rounds)

    from triglot.eval.tasks import load_suites
    from triglot.eval.tiny_model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("HF_HOME", str(tmp / "hf-home"))
        hf = save_tiny_model(tmp / "hf", args.benchmarks, vocab_size=2048, hidden=128, layers=4, max_len=1024)
        cfg = eval_config(tmp, hf, args.benchmarks, per_subject)
        batch_size = int(cfg.eval.batch_size or cfg.hardware.micro_batch_size * 4)
        tasks = write_lm_eval_tasks(load_suites(cfg.eval), tmp / "tasks")
        ours, theirs = [], []
        for r in range(rounds):
            for side in (("triglot", "lm-eval") if r % 2 == 0 else ("lm-eval", "triglot")):
                if side == "triglot":
                    ours.append(run_triglot(cfg))
                else:
                    theirs.append(run_lm_eval(hf, tmp / "tasks", tasks, batch_size, 1024))
        check = compare_samples(ours[-1]["samples"], theirs[-1]["out"])
    report(ours, theirs, check, batch_size, record=not args.smoke)


def report(ours: list[dict], theirs: list[dict], check: dict, batch_size: int, record: bool) -> None:
    n = len(ours[0]["samples"])
    best = {"ours": min(o["seconds"] for o in ours), "ours_scoring": min(o["scoring_seconds"] for o in ours),
            "theirs": min(t["seconds"] for t in theirs), "theirs_scoring": min(t["scoring_seconds"] for t in theirs)}
    ratio, scoring_ratio = best["theirs"] / best["ours"], best["theirs_scoring"] / best["ours_scoring"]
    agree = check["questions"] == n and not check["text_diffs"] and not check["prediction_diffs"] \
        and check["worst_ll_diff"] <= LL_TOLERANCE
    baseline = f"lm-evaluation-harness HF backend ({versions('lm_eval', 'transformers', 'torch')})"
    rows = [["triglot eval, end to end (suites, model load, scoring, outputs)", f"{best['ours']:.1f}",
             f"{n / best['ours']:.1f}"],
            ["triglot eval, scoring only", f"{best['ours_scoring']:.1f}", f"{n / best['ours_scoring']:.1f}"],
            ["lm-eval simple_evaluate, end to end (model load, tasks, scoring, metrics)", f"{best['theirs']:.1f}",
             f"{n / best['theirs']:.1f}"],
            ["lm-eval, scoring only (HFLM.loglikelihood)", f"{best['theirs_scoring']:.1f}",
             f"{n / best['theirs_scoring']:.1f}"]]
    body = "\n".join([
        "## Eval throughput (bench/bench_eval.py)", "",
        f"Machine: {machine_description()}", "",
        f"{n} questions ({len(SUBJECTS)} subjects across C-Eval, CMMLU, MMLU, HKCanto-Eval; zero-shot, letter "
        f"scoring), a random Llama (hidden 128, 4 layers, vocab 2048) saved as a Hugging Face folder, fp32 on CPU, "
        f"one process, batch size {batch_size} on both sides. Baseline: {baseline}, `simple_evaluate` with local "
        "task YAMLs the bench writes from triglot's templates (the header as the task description, question and "
        "options as Jinja, the template's separator as target delimiter). Best of the alternating rounds.", "",
        markdown_table(["run", "seconds", "questions/s"], rows), "",
        f"End to end, triglot / lm-eval: **{ratio:.2f}x** (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'not met'}); "
        f"scoring only: {scoring_ratio:.2f}x.", "",
        f"Same prompts and scores: {check['questions']} of {n} questions compared; contexts or continuations "
        f"differing: {len(check['text_diffs'])}; predictions differing: {len(check['prediction_diffs'])}; largest "
        f"per-choice log-likelihood difference {check['worst_ll_diff']:.2e} (tolerance {LL_TOLERANCE:g}): "
        f"{'agree' if agree else 'DO NOT agree'}.",
    ])
    publish("bench_eval", body, [goal("eval: questions/s of triglot eval / lm-eval HF backend, end to end", ratio,
                                      GOAL, unit="x", baseline=baseline)], record=record)
    if not agree:
        raise SystemExit(f"triglot and lm-eval disagree: {check}")


if __name__ == "__main__":
    main()
