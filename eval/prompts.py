"""Prompt templates, read from each suite's YAML file (`templates:`), one per style.

`official` follows the suite's own evaluation code; `lm-eval` reproduces lm-evaluation-harness's
stock task for the suite. eval/TEMPLATES.md shows every template in full and names the code it follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from triglot.errors import ConfigError


class _Row(Protocol):
    question: str
    choices: tuple[str, ...]
    answer: str | None
    passage: str


@dataclass(frozen=True)
class PromptTemplate:
    source: str  # the code this follows
    header: str  # first line(s); {subject} is the suite's name for the subject, {note} the zero-shot note
    answer_cue: str  # ends every question; the answer follows it
    answer_sep: str = ""  # between the cue and the answer (" " in the English templates; lm-eval's target delimiter)
    question_prefix: str = ""
    option: str = "\n{letter}. {text}"
    shot_end: str = "\n\n"  # after each example (lm-eval's fewshot delimiter)
    zero_shot_note: str = ""  # added to the header when there are no examples
    passage: str = "{passage}\n"  # before the question, where the row has a passage
    strip_question: bool = False  # lm-eval's stock tasks strip the question ({{question.strip()}})

    def block(self, row: _Row, letters: Sequence[str], with_answer: bool) -> str:
        question = row.question.strip() if self.strip_question else row.question
        text = self.passage.format(passage=row.passage) if getattr(row, "passage", "") else ""
        text += self.question_prefix + question
        text += "".join(self.option.format(letter=ltr, text=choice) for ltr, choice in zip(letters, row.choices, strict=True))
        text += self.answer_cue
        if with_answer:
            text += self.answer_sep + str(row.answer) + self.shot_end
        return text

    def prompt(self, subject: str, shots: Sequence[_Row], row: _Row, letters: Sequence[str]) -> str:
        """Header, the k examples with their answers, then the question up to the answer cue."""
        note = "" if shots else self.zero_shot_note
        text = self.header.format(subject=subject, note=note)
        # Each example shows its own letters: a shot may have fewer choices than the question.
        text += "".join(self.block(shot, letters[: len(shot.choices)] if len(shot.choices) <= len(letters)
                                   else _letters_for(shot, letters), True) for shot in shots)
        return text + self.block(row, letters, False)

    def continuation(self, answer: str) -> str:
        """What is scored after the prompt: a letter, or a choice's text in the text mode."""
        return self.answer_sep + answer


def _letters_for(row: _Row, letters: Sequence[str]) -> Sequence[str]:
    extra = [chr(ord(letters[-1]) + i + 1) for i in range(len(row.choices) - len(letters))]
    return list(letters) + extra


_FIELDS = {f.name for f in fields(PromptTemplate)}


def template_from(spec: dict, where: str) -> PromptTemplate:
    """A template from a suite file's `templates.<name>` mapping; unknown or missing keys are ConfigErrors."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping of template keys ({', '.join(sorted(_FIELDS))})")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; template keys are {', '.join(sorted(_FIELDS))}")
    for key in ("source", "header", "answer_cue"):
        if key not in spec:
            raise ConfigError(f"{where}: missing key '{key}'")
    return PromptTemplate(**spec)
