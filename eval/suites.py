"""Multiple-choice suites read from their official file layouts: C-Eval, CMMLU, MMLU, HKCanto-Eval.

A suite is one small class plus a registry entry in SUITES; rows that do not parse are reported
with file and line, skipped and counted.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from triglot.eval import prompts
from triglot.eval.prompts import PromptTemplate

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Question:
    suite: str
    subject: str
    split: str
    qid: str
    question: str
    choices: tuple[str, ...]
    answer: str | None  # gold letter; None where the split has no answers (C-Eval test)
    source: str  # file:line of the row's first line


@dataclass
class LoadReport:
    """Rows read and rows skipped (with file, line and reason) while loading one suite."""

    rows: int = 0
    skipped: list[dict] = field(default_factory=list)

    def skip(self, path: Path, line: int, reason: str) -> None:
        self.skipped.append({"file": str(path), "line": line, "reason": reason})

    def warn(self) -> None:
        """One warning per file with skipped rows, from rank 0 only (every rank loads the same files)."""
        from triglot.dist import read_dist_env

        if read_dist_env().rank != 0:
            return
        by_file: dict[str, list[dict]] = {}
        for row in self.skipped:
            by_file.setdefault(row["file"], []).append(row)
        for path, rows in by_file.items():
            first = rows[0]
            log.warning("%s: %d malformed row(s) skipped (first at line %d: %s); all are listed in results.json",
                        path, len(rows), first["line"], first["reason"])


class Suite:
    """One benchmark: where its files are, how a row reads, its subjects' names and categories."""

    name = ""
    folder = ""  # below eval.benchmarks_dir
    language = ""
    letters: tuple[str, ...] = ("A", "B", "C", "D")
    header = False  # files start with a header row
    id_column = False  # first column is a row id
    default_split = "test"
    fewshot_split = "dev"
    template: PromptTemplate

    def __init__(self, benchmarks_dir: str | Path):
        self.root = Path(benchmarks_dir) / self.folder

    def path(self, subject: str, split: str) -> Path:
        return self.root / split / f"{subject}_{split}.csv"

    def subjects(self) -> list[str]:
        """Subjects with a file in the default split, sorted; a missing or empty folder is an InputError."""
        split_dir = self.path("x", self.default_split).parent
        suffix = self.path("", self.default_split).name
        if not split_dir.is_dir() or not any(split_dir.glob("*.csv")):
            raise InputError(f"{self.name}: no CSV files in {split_dir}; expected the suite's official layout "
                             f"there (eval.benchmarks_dir is {self.root.parents[self.folder.count('/')]})")
        return sorted(p.name[: -len(suffix)] for p in split_dir.glob("*" + suffix))

    def has_answers(self, split: str) -> bool:
        return True

    def subject_name(self, subject: str) -> str:
        """The subject as the official prompt names it."""
        return subject

    def categories(self, subject: str) -> list[str]:
        return []

    def load(self, subject: str, split: str, report: LoadReport) -> list[Question]:
        path = self.path(subject, split)
        if not path.is_file():
            raise InputError(f"{self.name}: missing {path} (subject '{subject}', split '{split}')")
        ncols = int(self.id_column) + 1 + len(self.letters) + int(self.has_answers(split))
        questions = []
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            line = reader.line_num + 1
            for row in reader:
                start, line = line, reader.line_num + 1
                if self.header and start == 1:
                    continue
                question = self._parse(row, ncols, path, start, subject, split, report)
                if question is not None:
                    questions.append(question)
        report.rows += len(questions)
        return questions

    def _parse(self, row: list[str], ncols: int, path: Path, line: int, subject: str, split: str,
               report: LoadReport) -> Question | None:
        if not any(cell.strip() for cell in row):
            return None  # blank line
        if len(row) < ncols:
            report.skip(path, line, f"{len(row)} columns, expected {ncols}")
            return None
        # C-Eval's dev split carries an extra explanation column; anything else extra is an error.
        if len(row) > ncols and not (self.name == "ceval" and split == "dev" and len(row) == ncols + 1):
            report.skip(path, line, f"{len(row)} columns, expected {ncols}")
            return None
        qid = row[0].strip() if self.id_column else str(line)
        body = row[int(self.id_column):]
        n = len(self.letters)
        answer = body[1 + n].strip().upper() if self.has_answers(split) else None
        if self.has_answers(split) and answer not in self.letters:
            report.skip(path, line, f"answer '{body[1 + n]}' is not one of {', '.join(self.letters)}"
                        if answer else "missing answer")
            return None
        return Question(self.name, subject, split, qid, body[0], tuple(body[1:1 + n]), answer, f"{path}:{line}")


def _json(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _group(subcategories: list[str], categories: dict[str, list[str]]) -> list[str]:
    return [cat for cat, members in categories.items() if any(s in members for s in subcategories)]


class CEval(Suite):
    name, folder, language = "ceval", "ceval", "zh-Hans"
    header = id_column = True
    default_split = "val"
    template = prompts.CEVAL

    def has_answers(self, split: str) -> bool:
        return split != "test"

    @cached_property
    def mapping(self) -> dict:
        """subject -> [English name, Chinese name, category], shipped with the suite."""
        path = self.root / "subject_mapping.json"
        if not path.is_file():
            raise InputError(f"ceval: missing {path}; it ships with C-Eval and names each subject's category")
        return json.loads(path.read_text(encoding="utf-8"))

    def subject_name(self, subject: str) -> str:
        return self.mapping[subject][1]

    def categories(self, subject: str) -> list[str]:
        return [self.mapping[subject][2]]


class CMMLU(Suite):
    name, folder, language = "cmmlu", "cmmlu", "zh-Hans"
    header = id_column = True
    template = prompts.CMMLU
    groups = _json("cmmlu_categories.json")

    def path(self, subject: str, split: str) -> Path:
        return self.root / "data" / split / f"{subject}.csv"

    def subject_name(self, subject: str) -> str:
        return self.groups["name_en2zh"][subject]

    def categories(self, subject: str) -> list[str]:
        return _group(self.groups["subcategories"][subject], self.groups["categories"])


class MMLU(Suite):
    name, folder, language = "mmlu", "mmlu", "en"
    template = prompts.MMLU
    groups = _json("mmlu_categories.json")

    def subject_name(self, subject: str) -> str:
        return "".join(" " + word for word in subject.split("_"))  # format_subject() in evaluate.py

    def categories(self, subject: str) -> list[str]:
        return _group(self.groups["subcategories"][subject], self.groups["categories"])


class HKCanto(Suite):
    """An HKCanto-Eval set: data/<set>/{dev,test}/<subject>_{dev,test}.csv, no header.

    The sets carry no published subject grouping beyond the set itself, so that is the category.
    """

    language = "yue"
    template = prompts.HKCANTO
    category = ""

    def subject_name(self, subject: str) -> str:
        # The official script asks about "geography" for this subject.
        return "geography" if subject == "local_knowledge" else " ".join(subject.split("_"))

    def categories(self, subject: str) -> list[str]:
        return [self.category]


class HKCantoMMLU(HKCanto):
    name, folder = "hkcanto-mmlu", "hkcanto_eval/data/canto-mmlu"
    categories = MMLU.categories
    groups = MMLU.groups


class HKCantoCultural(HKCanto):
    name, folder, category = "hkcanto-cultural", "hkcanto_eval/data/cultural", "Hong Kong culture"


class HKCantoDSE(HKCanto):
    name, folder = "hkcanto-dse", "hkcanto_eval/data/dse"

    def categories(self, subject: str) -> list[str]:
        return [f"HKDSE ({'English' if subject.endswith('_en') else 'Chinese'})"]


class HKCantoLaw(HKCanto):
    name, folder, category = "hkcanto-law", "hkcanto_eval/data/hk-law", "Hong Kong law"


class HKCantoLinguistic(HKCanto):
    name, folder, category = "hkcanto-linguistic", "hkcanto_eval/data/linguistic_knowledge", "Cantonese linguistics"
    letters = ("A", "B", "C", "D", "E")


SUITES: dict[str, type[Suite]] = {
    cls.name: cls
    for cls in (CEval, CMMLU, MMLU, HKCantoMMLU, HKCantoCultural, HKCantoDSE, HKCantoLaw, HKCantoLinguistic)
}


def open_suite(name: str, benchmarks_dir: str | Path) -> Suite:
    if name not in SUITES:
        raise ConfigError(f"unknown suite '{name}' in eval.suites; suites are: {', '.join(SUITES)}")
    return SUITES[name](benchmarks_dir)
