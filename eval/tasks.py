"""Turn the configured suites into scoring requests: a prompt and the continuations to compare.

Letter mode compares the answer letters; text mode compares each choice's full text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from triglot.eval.suites import SUITES, LoadReport, Question, Suite, open_suite

from triglot.errors import ConfigError


@dataclass(frozen=True)
class Request:
    question: Question
    prompt: str
    continuations: tuple[str, ...]
    letters: tuple[str, ...]


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
        prompt = suite.template.prompt(suite.subject_name(q.subject), shots[q.subject], q, letters)
        options = letters if mode == "letter" else q.choices
        conts = tuple(suite.template.continuation(o) for o in options)
        requests.append(Request(q, prompt, conts, letters))
    return requests
