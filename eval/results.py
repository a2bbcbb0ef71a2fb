"""Per-question records, scores per subject / category / suite, and the files a run leaves behind.

Every aggregate carries two labelled accuracies: micro (every question once, `accuracy_question_weighted`
= `accuracy_micro`) and macro (the mean over subjects, `accuracy_subject_mean` = `accuracy_macro`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triglot.eval.tasks import Request


def make_record(req: Request, lls: Sequence[float], ntokens: Sequence[int], mode: str) -> dict:
    """One samples.jsonl line: prompt, choices, log-likelihoods, prediction and gold."""
    q = req.question
    if mode == "text":  # length-normalised: log-likelihood per character of the choice text
        scores = [ll / max(1, len(choice)) for ll, choice in zip(lls, q.choices, strict=True)]
    else:
        scores = list(lls)
    best = max(range(len(scores)), key=lambda i: scores[i])
    pred = req.letters[best]
    return {
        "suite": q.suite, "subject": q.subject, "split": q.split, "id": q.qid, "source": q.source,
        "prompt": req.prompt, "shots": req.kept, "letters": list(req.letters), "choices": list(q.choices),
        "continuations": list(req.continuations), "loglikelihoods": [float(x) for x in lls],
        "num_tokens": list(ntokens), "scores": scores, "prediction": pred, "gold": q.answer,
        "correct": None if q.answer is None else pred == q.answer,
    }


def _acc(correct: int, n: int) -> float | None:
    return correct / n if n else None


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(records: list[dict], suites: dict[str, Any]) -> dict:
    """{suite: {split, subjects, categories, overall}} with both weightings, labelled."""
    by_subject: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_subject[r["suite"]][r["subject"]].append(r)
    out = {}
    for name, subjects in by_subject.items():
        suite = suites[name]
        subj = {}
        for s, rows in sorted(subjects.items()):
            graded = [r for r in rows if r["correct"] is not None]
            correct = sum(r["correct"] for r in graded)
            subj[s] = {"questions": len(rows), "graded": len(graded), "correct": correct,
                       "accuracy": _acc(correct, len(graded)), "categories": suite.categories(s)}
        cats: dict[str, list[str]] = defaultdict(list)
        for s, v in subj.items():
            for c in v["categories"]:
                cats[c].append(s)
        rows = [r for rs in subjects.values() for r in rs]
        out[name] = {
            "split": next(iter(subjects.values()))[0]["split"],
            "language": suite.language,
            "subjects": subj,
            "categories": {c: _group([subj[s] for s in members]) for c, members in sorted(cats.items())},
            "overall": _group(list(subj.values())) | letter_spread(rows),
        }
    return out


def letter_spread(rows: list[dict]) -> dict:
    """Chance accuracy (mean of 1/choices) and how often each letter was predicted and is the answer.

    A model that always answers A has a spread of {"A": n}: easy to see beside its accuracy.
    """
    predicted: dict[str, int] = defaultdict(int)
    gold: dict[str, int] = defaultdict(int)
    for r in rows:
        predicted[r["prediction"]] += 1
        if r["gold"] is not None:
            gold[r["gold"]] += 1
    return {"chance": _mean([1 / len(r["letters"]) for r in rows if r["letters"]]),
            "predicted": dict(sorted(predicted.items())), "gold": dict(sorted(gold.items()))}


def _group(members: list[dict]) -> dict:
    graded = sum(m["graded"] for m in members)
    correct = sum(m["correct"] for m in members)
    micro, macro = _acc(correct, graded), _mean([m["accuracy"] for m in members])
    return {"subjects": len(members), "questions": sum(m["questions"] for m in members), "graded": graded,
            "accuracy_question_weighted": micro, "accuracy_subject_mean": macro,
            # The same two numbers under the names lm-eval and the suites' papers use.
            "accuracy_micro": micro, "accuracy_macro": macro}


def ceval_submission(records: list[dict]) -> dict:
    """C-Eval's official submission format: {subject: {id: letter}} for its test split."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        if r["suite"] == "ceval" and r["split"] == "test":
            out[r["subject"]][r["id"]] = r["prediction"]
    return dict(out)


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def summary_markdown(results: dict) -> str:
    """The table a person reads: suites, their categories, perplexity, skipped rows."""
    lines = [f"# Eval of {results['checkpoint']['path']}", ""]
    step = results["checkpoint"].get("step")
    lines += [(f"Training step {step}; " if step is not None else "") +
              f"{results['settings']['num_fewshot']}-shot, {results['settings']['mode']} scoring; "
              f"{results['timing']['questions']} questions in {results['timing']['seconds']:.1f} s "
              f"on {results['timing']['world_size']} rank(s).", "",
              "Accuracy in %: **micro** counts every question once (lm-eval's group accuracy, the suites' "
              "\"weighted\" average); **macro** averages the subjects (the suites' papers' per-category mean); "
              "**chance** is what guessing scores.", "",
              "| suite | split | category | subjects | questions | accuracy micro (by question) | "
              "accuracy macro (by subject) | chance |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in results["scores"].items():
        chance = pct(s["overall"].get("chance"))
        for label, g in [("overall", s["overall"]), *s["categories"].items()]:
            lines.append(f"| {name} | {s['split']} | {label} | {g['subjects']} | {few(g['questions'])} | "
                         f"{pct(g['accuracy_question_weighted'])} | {pct(g['accuracy_subject_mean'])} | {chance} |")
    lines += few_note(results["scores"]) + ["", *spread_table({"": results})]
    lines += generation_table(results.get("generation") or {})
    if results.get("perplexity"):
        lines += ["", "| language | characters | tokens | perplexity | bits per character |", "|---|---|---|---|---|"]
        for lang, p in results["perplexity"].items():
            lines.append(f"| {lang} | {p['characters']} | {p['tokens']} | {p['perplexity']:.3f} | "
                         f"{p['bits_per_character']:.4f} |")
    skipped = results.get("skipped_rows", {})
    if any(skipped.values()):
        lines += ["", "Rows skipped as malformed, per file:", ""]
        lines += [f"- {path}: {f['rows']} row(s), first at line {f['first_line']}: {f['first_reason']}"
                  for files in skipped.values() for path, f in files.items()]
    if results.get("ceval_submission"):
        lines += ["", f"C-Eval test predictions: {results['ceval_submission']} (official submission format)."]
    return "\n".join(lines) + "\n"


def generation_table(gen: dict) -> list[str]:
    """Generation tasks per subject (translation: per direction): exact match in %, chrF, BLEU."""
    if not gen:
        return []
    lines = ["", "Generation (greedy): exact match in %, chrF and BLEU (sacrebleu, 0-100); **macro** averages the "
             "subjects.", "", "| suite | split | subject | questions | exact match | chrF | BLEU |",
             "|---|---|---|---|---|---|---|"]
    for name, g in gen.items():
        for subject, t in g["subjects"].items():
            lines.append(f"| {name} | {g['split']} | {subject} | {few(t['questions'])} | {pct(t['exact_match'])} | "
                         f"{t['chrf']:.2f} | {t['bleu']:.2f} |")
        m = g["macro_average"]
        lines.append(f"| {name} | {g['split']} | macro | | {pct(m['exact_match'])} | {m['chrf']:.2f} | "
                     f"{m['bleu']:.2f} |")
    return lines


# Below this many questions a score says little: two standard errors at p = 0.5 are over 10 points.
MIN_QUESTIONS = 100


def few(n: int) -> str:
    return f"{n} ⚠" if n < MIN_QUESTIONS else str(n)


def few_note(scores: dict) -> list[str]:
    if not any(s["overall"]["questions"] < MIN_QUESTIONS for s in scores.values()):
        return []
    smallest = min(s["overall"]["questions"] for s in scores.values())
    margin = 200 * math.sqrt(0.25 / max(1, smallest))
    return ["", f"⚠ fewer than {MIN_QUESTIONS} questions: such rows mean little (with {smallest} questions, "
            f"two standard errors are ±{margin:.0f} points). Score more (eval.limit_per_subject=0 scores all)."]


def spread_table(by_model: dict[str, dict]) -> list[str]:
    """Share of each predicted letter per suite (and model), beside the answers' own spread."""
    lines = ["Predicted letters in % (answers' spread in brackets):", "",
             "| suite | model | predictions |" if any(by_model) else "| suite | predictions |",
             "|---|---|---|" if any(by_model) else "|---|---|"]
    for label, res in by_model.items():
        for name, s in res["scores"].items():
            pred, gold = s["overall"].get("predicted", {}), s["overall"].get("gold", {})
            total, total_gold = max(1, sum(pred.values())), max(1, sum(gold.values()))
            cells = ", ".join(f"{k} {100 * pred.get(k, 0) / total:.0f}" +
                              (f" [{100 * gold.get(k, 0) / total_gold:.0f}]" if gold else "")
                              for k in sorted(set(pred) | set(gold)))
            lines.append(f"| {name} | {label} | {cells} |" if label else f"| {name} | {cells} |")
    return lines


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def write_samples(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def flat_metrics(results: dict) -> dict[str, float]:
    """Scalars for W&B and metrics.jsonl, e.g. eval/mmlu/acc_weighted, eval/ppl/en."""
    out = {}
    for name, s in results["scores"].items():
        for label, g in [("overall", s["overall"]), *s["categories"].items()]:
            prefix = f"eval/{name}" if label == "overall" else f"eval/{name}/{label}"
            for key, short in (("accuracy_question_weighted", "acc_weighted"),
                               ("accuracy_subject_mean", "acc_subject_mean")):
                if g[key] is not None:
                    out[f"{prefix}/{short}"] = g[key]
    for name, g in (results.get("generation") or {}).items():
        for subject, t in [*g["subjects"].items(), ("macro", g["macro_average"])]:
            for key in ("exact_match", "chrf", "bleu"):
                out[f"eval/{name}/{subject}/{key}"] = t[key]
    for lang, p in (results.get("perplexity") or {}).items():
        if math.isfinite(p["perplexity"]):
            out[f"eval/ppl/{lang}"] = p["perplexity"]
        out[f"eval/bpc/{lang}"] = p["bits_per_character"]
    return out
