"""Generation tasks (`kind: generation` suite files): greedy, batched generation cut at stop strings,
scored by exact match, chrF and BLEU (sacrebleu), reported per subject (for translation: per direction).

Prompts are left-padded into batches sorted by length; the continuation is cut at the first stop
string. Requests are dealt to ranks like log-likelihood rows and gathered on rank 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triglot.eval.suites import LoadReport, Suite, _need

from triglot.errors import ConfigError, InputError

GEN_TEMPLATE_KEYS = {"source", "header", "shot", "query", "shot_end"}


@dataclass(frozen=True)
class GenQuestion:
    suite: str
    subject: str
    split: str
    qid: str
    source_text: str
    reference: str
    source: str  # file:line


@dataclass(frozen=True)
class GenRequest:
    question: GenQuestion
    prompt: str
    kept: int  # examples in the prompt


class GenerationSuite(Suite):
    """A suite of source/reference pairs; the subjects come from the file names (e.g. eng_yue)."""

    kind = "generation"

    def __init__(self, spec: dict, path: Path, benchmarks_dir: str | Path, template: str = "official"):
        self._read_identity(spec, path, benchmarks_dir)
        self.format = spec.get("format", "jsonl")
        self.header = bool(spec.get("header", self.format == "csv"))
        self.fields = _need(spec, path, "fields", dict)
        for key in ("source", "target"):
            _need(spec, path, f"fields.{key}", (str, int))
        self.default_split = str(spec.get("default_split", "test"))
        self.fewshot_split = str(spec.get("fewshot_split", "train"))
        self.no_answers: set[str] = set()
        gen = spec.get("generation") or {}
        self.stop = list(gen.get("stop", ["\n"]))
        self.max_new_tokens = int(gen.get("max_new_tokens", 128))
        self.directions: dict[str, dict] = gen.get("subjects", {})
        templates = _need(spec, path, "templates", dict)
        if template not in templates:
            raise ConfigError(f"{path}: no template '{template}' (eval.template); this suite has "
                              f"{', '.join(templates)}")
        self.template_name = template
        self.template = templates[template]
        unknown = sorted(set(self.template) - GEN_TEMPLATE_KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key 'templates.{template}.{unknown[0]}'; generation template keys "
                              f"are {', '.join(sorted(GEN_TEMPLATE_KEYS))}")
        for key in ("header", "shot", "query"):
            _need(spec, path, f"templates.{template}.{key}", str)

    def subject_name(self, subject: str) -> str:
        return subject

    def categories(self, subject: str) -> list[str]:
        return []

    def check(self, split: str, fewshot: bool) -> None:
        if split not in self.files:
            raise ConfigError(f"eval.splits: suite '{self.name}' has no split '{split}' ({self.file} lists "
                              f"{', '.join(self.files)})")
        for subject in self.subjects():
            if subject not in self.directions:
                raise ConfigError(f"{self.file}: generation.subjects: no entry for '{subject}' (its languages and "
                                  f"BLEU tokenizer)")
            for needed in [split] + ([self.fewshot_split] if fewshot else []):
                self.load(subject, needed, LoadReport())

    def load(self, subject: str, split: str, report: LoadReport) -> list[GenQuestion]:
        out = []
        for path in self.files_of(subject, split):
            if not path.is_file():
                raise InputError(f"{self.name}: missing {path} (subject '{subject}', split '{split}')")
            for line, row, _ in self.read_rows(path, split):
                if not isinstance(row, dict):
                    report.skip(path, line, row if isinstance(row, str) else "not a JSON object")
                    continue
                src, ref = row.get(self.fields["source"]), row.get(self.fields["target"])
                if not src or not ref:
                    report.skip(path, line, "missing source or target text")
                    continue
                qid = row.get(self.fields.get("id", ""), line)
                out.append(GenQuestion(self.name, subject, split, str(qid), str(src), str(ref), f"{path}:{line}"))
            if report.skipped and not out:
                raise InputError(f"{self.file}: no row of {path} matches 'fields' ({report.skipped[-1]['reason']})")
        report.rows += len(out)
        return out

    def prompt(self, q: GenQuestion, shots: list[GenQuestion]) -> str:
        names = self.directions[q.subject]
        fmt = {"source_language": names.get("source_language", ""), "target_language": names.get("target_language", "")}
        text = self.template["header"].format(**fmt)
        end = self.template.get("shot_end", "\n\n")
        text += "".join(self.template["shot"].format(**fmt, source=s.source_text, target=s.reference) + end
                        for s in shots)
        return text + self.template["query"].format(**fmt, source=q.source_text)


def build_gen_requests(loaded: Any, num_fewshot: int) -> list[GenRequest]:
    suite, shots, out = loaded.suite, {}, []
    for q in loaded.questions:
        if q.subject not in shots:
            pool = suite.load(q.subject, suite.fewshot_split, LoadReport()) if num_fewshot > 0 else []
            shots[q.subject] = pool[:num_fewshot]
        out.append(GenRequest(q, suite.prompt(q, shots[q.subject]), len(shots[q.subject])))
    return out


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text up to the first stop string (the stop string itself dropped)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and i >= 0:
            cut = min(cut, i)
    return text[:cut]


def generate(model: Any, tokenizer: Any, prompts: list[tuple[int, str]], max_new_tokens: int, stop: list[str],
             batch_size: int, max_length: int) -> list[tuple[int, str]]:
    """(id, continuation) for each (id, prompt): greedy, in left-padded batches, longest first."""
    import torch

    device = next(model.parameters()).device
    encoded = [(i, tokenizer(p).input_ids[-max(1, max_length - max_new_tokens):]) for i, p in prompts]
    encoded.sort(key=lambda item: (-len(item[1]), item[0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        width = max(len(ids) for _, ids in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (_, row) in enumerate(batch):
            ids[b, width - len(row):] = torch.tensor(row)
            mask[b, width - len(row):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, num_beams=1,
                                 stop_strings=stop or None, tokenizer=tokenizer if stop else None)
        for b, (i, _) in enumerate(batch):
            text = tokenizer.decode(gen[b, width:], skip_special_tokens=True)
            out.append((i, cut_at_stop(text, stop)))
    return out


def gen_record(req: GenRequest, prediction: str) -> dict:
    q = req.question
    return {"kind": "generation", "suite": q.suite, "subject": q.subject, "split": q.split, "id": q.qid,
            "source": q.source, "prompt": req.prompt, "shots": req.kept, "prediction": prediction.strip(),
            "reference": q.reference, "exact_match": prediction.strip() == q.reference.strip()}


def gen_scores(records: list[dict], suites: dict[str, GenerationSuite]) -> dict:
    """{suite: {split, subjects: {direction: {questions, exact_match, chrf, bleu}}, macro average}}."""
    import sacrebleu

    by: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by.setdefault(r["suite"], {}).setdefault(r["subject"], []).append(r)
    out = {}
    for name, subjects in by.items():
        suite, table = suites[name], {}
        for subject, rows in sorted(subjects.items()):
            preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
            tokenize = suite.directions.get(subject, {}).get("bleu_tokenize", "13a")
            table[subject] = {
                "questions": len(rows),
                "exact_match": sum(r["exact_match"] for r in rows) / len(rows),
                "chrf": sacrebleu.corpus_chrf(preds, [refs]).score,
                "bleu": sacrebleu.corpus_bleu(preds, [refs], tokenize=tokenize).score,
                "bleu_tokenize": tokenize,
                **{k: v for k, v in suite.directions.get(subject, {}).items() if k.endswith("_language")},
            }
        macro = {m: sum(t[m] for t in table.values()) / len(table) for m in ("exact_match", "chrf", "bleu")}
        out[name] = {"split": next(iter(subjects.values()))[0]["split"], "language": suite.language,
                     "subjects": table, "macro_average": macro}
    return out
