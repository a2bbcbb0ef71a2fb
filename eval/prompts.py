"""Prompt templates, one per suite, copied from each suite's official evaluation code.

eval/TEMPLATES.md shows every template in full and names the file it follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class _Row(Protocol):
    question: str
    choices: tuple[str, ...]
    answer: str | None


@dataclass(frozen=True)
class PromptTemplate:
    source: str  # the official code this follows
    header: str  # first line(s); {subject} is the suite's name for the subject
    answer_cue: str  # ends every question; the answer follows it
    answer_sep: str = ""  # between the cue and the answer (" " in the English templates)
    question_prefix: str = ""
    option: str = "\n{letter}. {text}"
    shot_end: str = "\n\n"
    zero_shot_note: str = ""  # added to the header when there are no examples

    def block(self, row: _Row, letters: Sequence[str], with_answer: bool) -> str:
        text = self.question_prefix + row.question
        text += "".join(self.option.format(letter=ltr, text=choice) for ltr, choice in zip(letters, row.choices, strict=True))
        text += self.answer_cue
        if with_answer:
            text += self.answer_sep + str(row.answer) + self.shot_end
        return text

    def prompt(self, subject: str, shots: Sequence[_Row], row: _Row, letters: Sequence[str]) -> str:
        """Header, the k examples with their answers, then the question up to the answer cue."""
        note = "" if shots else self.zero_shot_note
        text = self.header.format(subject=subject, note=note)
        text += "".join(self.block(shot, letters, True) for shot in shots)
        return text + self.block(row, letters, False)

    def continuation(self, answer: str) -> str:
        """What is scored after the prompt: a letter, or a choice's text in the text mode."""
        return self.answer_sep + answer


# hendrycks/test evaluate.py: format_subject() joins the words with a leading space, so the header
# reads "about  abstract algebra." (two spaces); kept as published.
MMLU = PromptTemplate(
    source="hendrycks/test evaluate.py (gen_prompt, format_example)",
    header="The following are multiple choice questions (with answers) about {subject}.\n\n",
    answer_cue="\nAnswer:",
    answer_sep=" ",
)

# haonan-li/CMMLU src/mp_utils.py, without chain of thought.
CMMLU = PromptTemplate(
    source="haonan-li/CMMLU src/mp_utils.py (gen_prompt, format_example; cot=False)",
    header="以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n",
    question_prefix="题目：",
    answer_cue="\n答案是：",
)

# hkust-nlp/ceval code/evaluator_series/evaluators/llama.py, without chain of thought; the header is
# used zero-shot as well, as in the suite's published prompt format.
CEVAL = PromptTemplate(
    source="hkust-nlp/ceval code/evaluator_series/evaluators/llama.py (generate_few_shot_prompt, format_example)",
    header="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
    answer_cue="\n答案：",
)

# hon9kon9ize/hkeval2025 scripts/eval.py: the MMLU template with the subject's words joined by single
# spaces, and " DO NOT EXPLAIN." added to the header zero-shot. The official instruction frame is
# English for every set; the questions themselves are in Cantonese (or the set's language).
HKCANTO = PromptTemplate(
    source="hon9kon9ize/hkeval2025 scripts/eval.py (gen_prompt, format_example)",
    header="The following are multiple choice questions (with answers) about {subject}.{note}\n\n",
    answer_cue="\nAnswer:",
    answer_sep=" ",
    zero_shot_note=" DO NOT EXPLAIN.",
)
