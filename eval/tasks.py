"""Turn the configured suites into scoring requests: a prompt and the continuations to compare.

Letter mode compares the answer letters; text mode compares each choice's full text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from triglot.eval.prompts import PromptTemplate
from triglot.eval.suites import SUITES, LoadReport, Question, Suite, open_suite

from triglot.errors import ConfigError


@dataclass(frozen=True)
class Request:
    question: Question
    prompt: str
    continuations: tuple[str, ...]
    letters: tuple[str, ...]
    shots: tuple[Question, ...] = ()  # the examples offered; the prompt holds the first `kept` of them
    kept: int = 0
    template: PromptTemplate | None = None
    subject_name: str = ""

    def with_shots(self, k: int) -> Request:
        """The same question with only the first k examples (the official codes' way to fit a long prompt)."""
        prompt = self.template.prompt(self.subject_name, self.shots[:k], self.question, self.letters)
        return replace(self, prompt=prompt, kept=k)


@dataclass
class LoadedSuite:
    suite: Suite
    split: str
    questions: list[Question]
    report: LoadReport


def _wanted(suite: str, subject: str, only: Iterable[str]) -> bool:
    only = list(only)
    return not only or subject in only or f"{suite}/{subject}" in only


def load_suites(ecfg: Any) -> list[LoadedSuite]:
    """Questions of every configured suite (subject filter and per-subject limit applied)."""
    loaded, matched = [], set()
    for name in list(ecfg.suites) or list(SUITES):
        suite = open_suite(name, ecfg.benchmarks_dir, ecfg.template, list(ecfg.suite_dirs))
        split = ecfg.splits.get(suite.name, suite.default_split)
        suite.check(split, ecfg.num_fewshot > 0)
        report = LoadReport()
        questions = []
        for subject in suite.subjects():
            if not _wanted(name, subject, ecfg.subjects):
                continue
            matched |= {subject, f"{name}/{subject}"}
            rows = suite.load(subject, split, report)
            questions += rows[: ecfg.limit_per_subject] if ecfg.limit_per_subject > 0 else rows
        report.warn()
        loaded.append(LoadedSuite(suite, split, questions, report))
    unknown = [s for s in ecfg.subjects if s not in matched]
    if unknown:
        raise ConfigError(f"eval.subjects: {', '.join(unknown)} match no subject of the suites scored "
                          f"({', '.join(ls.suite.name for ls in loaded)}); use 'subject' or 'suite/subject'")
    return loaded


def build_requests(loaded: LoadedSuite, num_fewshot: int, mode: str) -> list[Request]:
    """Prompt (header, k dev examples, question) and continuations for every question of a suite."""
    suite, requests = loaded.suite, []
    shots: dict[str, list[Question]] = {}
    for q in loaded.questions:
        if q.subject not in shots:
            dev = suite.load(q.subject, suite.fewshot_split, LoadReport()) if num_fewshot > 0 else []
            shots[q.subject] = dev[:num_fewshot]
        letters = suite.letters[: len(q.choices)]
        name = suite.subject_name(q.subject)
        prompt = suite.template.prompt(name, shots[q.subject], q, letters)
        options = letters if mode == "letter" else q.choices
        conts = tuple(suite.template.continuation(o) for o in options)
        requests.append(Request(q, prompt, conts, letters, tuple(shots[q.subject]), len(shots[q.subject]),
                                suite.template, name))
    return requests


def fit_shots(requests: list[Request], tokenizer: Any, max_length: int) -> list[Request]:
    """Drop whole examples, last first, until prompt and longest continuation fit in max_length tokens.

    As hendrycks/test evaluate.py and CMMLU's mp_utils do (k -= 1 while the prompt is too long); a
    prompt too long with no example left loses tokens from the left when scored.
    """
    out = []
    for req in requests:
        longest = max(len(tokenizer(c, add_special_tokens=False).input_ids) for c in req.continuations)
        k = req.kept
        while k > 0 and len(tokenizer(req.prompt).input_ids) + longest > max_length:
            k -= 1
            req = req.with_shots(k)
        out.append(req)
    return out
