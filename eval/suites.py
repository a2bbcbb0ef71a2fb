"""Multiple-choice suites defined by YAML files (configs/eval/<name>.yaml): where the files are, how a row
reads, the subjects' names and categories, and the prompt templates.

A suite file is checked completely when the suites load, before any model loads: an unknown key, a
missing file, a field no file has, a subject with no name or category is a ConfigError or InputError
naming the suite file and the key. Rows that do not parse are skipped and counted per file.
eval/TEMPLATES.md documents the keys and every shipped suite.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from triglot.eval.prompts import PromptTemplate, template_from

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
DATA = Path(__file__).resolve().parent / "data"
FORMATS = ("csv", "json", "jsonl", "parquet")
ANSWER_FORMATS = ("letter", "index", "text")
KEYS = {"name", "description", "language", "script", "default", "folder", "files", "format", "header", "fields",
        "answer_format", "letters", "no_answers", "default_split", "fewshot_split", "subject_names", "categories",
        "templates", "derive", "kind", "generation"}
FIELD_KEYS = {"id", "question", "choices", "answer", "passage", "subject"}
CSV_FIELD_LIMIT = 16 * 2**20  # characters in one CSV field: far above any question or passage; Python's is 128 KiB


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
    passage: str = ""  # reading comprehension: the text the question is about


_WARNED: set[tuple[str, int]] = set()


@dataclass
class LoadReport:
    """Rows read and rows skipped (with file, line and reason) while loading one suite."""

    rows: int = 0
    skipped: list[dict] = field(default_factory=list)

    def skip(self, path: Path, line: int, reason: str) -> None:
        self.skipped.append({"file": str(path), "line": line, "reason": reason})

    def by_file(self) -> dict[str, dict]:
        """{file: {rows, first_line, first_reason}}: what results.json records, one entry per file."""
        out: dict[str, dict] = {}
        for row in self.skipped:
            entry = out.setdefault(row["file"], {"rows": 0, "first_line": row["line"], "first_reason": row["reason"]})
            entry["rows"] += 1
        return out

    def warn(self) -> None:
        """One warning per file with skipped rows, from rank 0 only (every rank loads the same files)."""
        from triglot.dist import read_dist_env

        if read_dist_env().rank != 0:
            return
        for path, entry in self.by_file().items():
            if (path, entry["rows"]) in _WARNED:
                continue  # the suites load twice per run (checked first, then scored)
            _WARNED.add((path, entry["rows"]))
            log.warning("%s: %d malformed row(s) skipped (first at line %d: %s); counted in results.json",
                        path, entry["rows"], entry["first_line"], entry["first_reason"])


def suite_dirs(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Folders searched for <name>.yaml: eval.suite_dirs first, then configs/eval of the config root."""
    from triglot.config.loader import find_config_root

    return [Path(d) for d in extra] + [find_config_root() / "eval"]


def suite_file(name: str, dirs: list[Path]) -> Path:
    """The YAML file of a suite name (or a path to a .yaml file); an unknown name is a ConfigError."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise ConfigError(f"eval.suites: suite file {name} does not exist")
        return Path(name)
    for d in dirs:
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    known = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ConfigError(f"unknown suite '{name}' in eval.suites{hint}; suites are: {', '.join(known)}; "
                      f"add configs/eval/{name}.yaml or put its folder in eval.suite_dirs")


def read_spec(path: Path) -> dict:
    """The suite file's keys, with the types every kind of suite reads checked (a ConfigError names the key)."""
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the suite file as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(KEYS), n=1)
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    if "header" in spec and not isinstance(spec["header"], bool):
        raise ConfigError(f"{path}: 'header' must be true or false, got {spec['header']!r}")
    for key, example in (("letters", "[A, B, C, D]"), ("no_answers", "[test]")):
        value = spec.get(key)
        if value is not None and not (isinstance(value, list) and value
                                      and all(isinstance(v, str) and v for v in value)):
            raise ConfigError(f"{path}: '{key}' must be a list of names, e.g. {key}: {example}; got {value!r}")
    return spec


def _need(spec: dict, path: Path, key: str, kind: type | tuple[type, ...]) -> Any:
    value = spec
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise ConfigError(f"{path}: missing key '{key}'")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{path}: '{key}' must be a {names}, got {value!r}")
    return value


class Suite:
    """One multiple-choice benchmark as its YAML file describes it."""

    def __init__(self, spec: dict, path: Path, benchmarks_dir: str | Path, template: str = "official"):
        self._read_identity(spec, path, benchmarks_dir)
        self.format = spec.get("format", "csv")
        if self.format not in FORMATS:
            raise ConfigError(f"{path}: format '{self.format}' is not one of {', '.join(FORMATS)}")
        self.header = bool(spec.get("header", self.format == "csv"))
        self.fields: dict[str, Any] = _need(spec, path, "fields", dict)
        bad = sorted(set(self.fields) - FIELD_KEYS)
        if bad:
            raise ConfigError(f"{path}: unknown key 'fields.{bad[0]}'; fields are {', '.join(sorted(FIELD_KEYS))}")
        for key in ("question", "choices", "answer"):
            _need(spec, path, f"fields.{key}", (str, int, list))
        self.answer_format = spec.get("answer_format", "letter")
        if self.answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"{path}: answer_format '{self.answer_format}' is not one of {', '.join(ANSWER_FORMATS)}")
        self.letters = tuple(spec.get("letters", ["A", "B", "C", "D"]))
        self.no_answers = set(spec.get("no_answers", []))
        self.default_split = str(spec.get("default_split", "test"))
        self.fewshot_split = str(spec.get("fewshot_split", "dev"))
        for key in ("default_split", "fewshot_split"):
            if getattr(self, key) not in self.files:
                raise ConfigError(f"{path}: {key} '{getattr(self, key)}' has no entry in 'files' "
                                  f"({', '.join(self.files)})")
        templates = _need(spec, path, "templates", dict)
        if template not in templates:
            raise ConfigError(f"{path}: no template '{template}' (eval.template); this suite has "
                              f"{', '.join(templates)}")
        self.template_name = template
        self.template: PromptTemplate = template_from(templates[template], f"{path}: templates.{template}")

    # -- files ---------------------------------------------------------------------------------------------

    def _read_identity(self, spec: dict, path: Path, benchmarks_dir: str | Path) -> None:
        """What every suite file gives, multiple-choice or generation: name, language, where its files are."""
        self.spec, self.file = spec, path
        self.name = _need(spec, path, "name", str)
        self.language = _need(spec, path, "language", str)
        self.script = str(spec.get("script", ""))
        self.description = str(spec.get("description", ""))
        folder = _need(spec, path, "folder", str)
        self.root = Path(folder) if Path(folder).is_absolute() else Path(benchmarks_dir) / folder
        self.benchmarks_dir = Path(benchmarks_dir)
        self.files: dict[str, str] = _need(spec, path, "files", dict)
        for split, pattern in self.files.items():
            if not isinstance(pattern, str) or not pattern or Path(pattern).is_absolute():
                raise ConfigError(f"{path}: files.{split} must be a path pattern below the suite's folder "
                                  f"('folder' gives the absolute part), with {{subject}} where the file name gives "
                                  f"the subject; got {pattern!r}")

    def path(self, subject: str, split: str) -> Path:
        return self.root / self.files[split].replace("{subject}", subject)

    def _matches(self, split: str) -> dict[str, Path]:
        pattern = self.files[split]
        glob = pattern.replace("{subject}", "*")
        head, _, tail = pattern.partition("{subject}")
        found = {}
        for p in sorted(self.root.glob(glob)):
            rel = p.relative_to(self.root).as_posix()
            found[rel[len(head): len(rel) - len(tail)] if tail else rel[len(head):]] = p
        return found

    def by_field(self) -> bool:
        """True when rows carry their subject (fields.subject) instead of the file name."""
        return "{subject}" not in self.files[self.default_split]

    def files_of(self, subject: str, split: str) -> list[Path]:
        if "{subject}" in self.files[split]:
            return [self.path(subject, split)]
        return sorted(self.root.glob(self.files[split]))

    @cached_property
    def _subjects(self) -> list[str]:
        return self._find_subjects()

    def subjects(self) -> list[str]:
        """Subjects with a file (or rows) in the default split, sorted; no file there is an InputError."""
        return list(self._subjects)

    def _find_subjects(self) -> list[str]:
        if self.by_field():
            paths = self.files_of("", self.default_split)
            found = {self._row_subject(row) for p in paths for _, row, _ in self.read_rows(p, self.default_split)
                     if isinstance(row, dict)} if paths else set()
            found.discard(None)
        else:
            found = set(self._matches(self.default_split))
        if not found:
            where = self.root / self.files[self.default_split].replace("{subject}", "*")
            raise InputError(f"{self.file}: files.{self.default_split}: no file matches {where} "
                             f"(eval.benchmarks_dir is {self.benchmarks_dir})")
        return sorted(found)

    def _row_subject(self, row: dict) -> str | None:
        if "subject" not in self.fields:
            return "all"
        value = self._get(row, "subject")
        return None if value is None else str(value)

    def has_answers(self, split: str) -> bool:
        return split not in self.no_answers

    # -- names and categories ------------------------------------------------------------------------------

    def _json(self, where: dict, key: str) -> Any:
        if "shipped" in where:
            target = DATA / where["shipped"]
        elif "file" in where:
            target = self.root / where["file"]
        else:
            raise ConfigError(f"{self.file}: {key} needs 'shipped' (a file in eval/data) or 'file' (in the suite's "
                              f"folder)")
        if not target.is_file():
            raise InputError(f"{self.file}: {key}: missing {target}")
        data = json.loads(target.read_text(encoding="utf-8"))
        return data[where["key"]] if "key" in where else data

    def _name_spec(self) -> dict:
        """subject_names as a mapping: a style name, a JSON table, or one of those per template."""
        spec = self.spec.get("subject_names", "words")
        if isinstance(spec, dict) and self.template_name in spec:
            spec = spec[self.template_name]
        return spec if isinstance(spec, dict) else {"style": spec}

    @cached_property
    def _names(self) -> dict:
        spec = self._name_spec()
        return self._json(spec, "subject_names") if "style" not in spec else {}

    def subject_name(self, subject: str) -> str:
        """The subject as the template names it."""
        spec = self._name_spec()
        if subject in spec.get("rename", {}):
            return spec["rename"][subject]
        if "style" not in spec:
            entry = self._names.get(subject)
            if entry is None:
                raise ConfigError(f"{self.file}: subject_names: no name for subject '{subject}'")
            return entry[spec["index"]] if "index" in spec else entry
        style = spec["style"]
        if style == "words_leading_space":  # hendrycks/test format_subject(): " " before every word
            return "".join(" " + word for word in subject.split("_"))
        if style == "words":
            return " ".join(subject.split("_"))
        if style == "as_is":
            return subject
        raise ConfigError(f"{self.file}: subject_names.style '{style}' is not one of words, words_leading_space, "
                          f"as_is")

    @cached_property
    def _categories(self) -> Any:
        spec = self.spec.get("categories") or {}
        return self._json(spec, "categories") if ("shipped" in spec or "file" in spec) else None

    def categories(self, subject: str) -> list[str]:
        spec = self.spec.get("categories") or {}
        if not spec:
            return []
        if "constant" in spec:
            return [spec["constant"]]
        if "suffix" in spec:
            return [next(cat for suf, cat in spec["suffix"].items() if subject.endswith(suf))]
        if "subjects" in spec:
            table = spec["subjects"]
        else:
            table = self._categories
            if "index" in spec:
                return [table[subject][spec["index"]]] if subject in table else self._no_category(subject)
            if "subcategories" in spec:
                subs = table[spec["subcategories"]].get(subject)
                if subs is None:
                    return self._no_category(subject)
                return [cat for cat, members in table[spec["groups"]].items() if any(s in members for s in subs)]
        cats = table.get(subject)
        if cats is None:
            return self._no_category(subject)
        return [cats] if isinstance(cats, str) else list(cats)

    def _no_category(self, subject: str) -> list[str]:
        raise ConfigError(f"{self.file}: categories: subject '{subject}' has no category; add it, or remove "
                          f"'categories' to report the suite without them")

    def check(self, split: str, fewshot: bool) -> None:
        """Every subject named and categorised; the scored (and shot) split's files present. Raises before
        scoring."""
        if split not in self.files:
            raise ConfigError(f"eval.splits: suite '{self.name}' has no split '{split}' ({self.file} lists "
                              f"{', '.join(self.files)})")
        subjects = self.subjects()
        for subject in subjects:
            self.subject_name(subject)
            self.categories(subject)
        for needed in [split] + ([self.fewshot_split] if fewshot else []):
            missing = [s for s in subjects if not all(p.is_file() for p in self.files_of(s, needed))]
            if missing:
                raise InputError(f"{self.file}: files.{needed}: missing {self.path(missing[0], needed)}")
        if fewshot:  # the shots' rows too: a file no row of which parses fails here, not after the model loads
            for subject in subjects:
                self.load(subject, self.fewshot_split, LoadReport())

    # -- rows ----------------------------------------------------------------------------------------------

    def load(self, subject: str, split: str, report: LoadReport) -> list[Question]:
        questions = []
        for path in self.files_of(subject, split):
            questions += self._load_file(path, subject, split, report)
        report.rows += len(questions)
        return questions

    def _load_file(self, path: Path, subject: str, split: str, report: LoadReport) -> list[Question]:
        if not path.is_file():
            raise InputError(f"{self.name}: missing {path} (subject '{subject}', split '{split}')")
        questions, failed = [], 0
        for line, row, _ in self.read_rows(path, split):
            if self.by_field() and (self._row_subject(row) != subject if isinstance(row, dict)
                                    else subject != self.subjects()[0]):
                continue  # another subject's row; a row with no subject counts under the first subject
            question = self._parse(row, path, line, subject, split, report)
            if question is None:
                failed += 1
            else:
                questions.append(question)
        if failed and not questions:
            first = report.skipped[-1]["reason"] if report.skipped else "no row parsed"
            raise InputError(f"{self.file}: no row of {path} matches 'fields' ({first}); check fields and "
                             f"answer_format")
        return questions

    def read_rows(self, path: Path, split: str) -> Iterator[tuple[int, Any, int]]:
        """(line, row, expected width) per row: a list of cells (csv) or a mapping (json, jsonl, parquet).
        A file that is not UTF-8 text is an InputError naming its first bad line."""
        try:
            yield from self._rows_of_format(path, split)
        except UnicodeDecodeError:
            line, byte = first_bad_utf8(path)
            raise InputError(f"{path}:{line}: not UTF-8 text (byte {byte}); save the benchmark file as UTF-8") from None

    def _rows_of_format(self, path: Path, split: str) -> Iterator[tuple[int, Any, int]]:
        if self.format == "csv":
            yield from self._csv_rows(path, split)
        elif self.format == "jsonl":
            with open(path, encoding="utf-8-sig") as fh:
                for n, text in enumerate(fh, 1):
                    if text.strip():
                        yield n, self._json_row(text), 0
        elif self.format == "json":
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
            except ValueError as err:
                raise InputError(f"{path}: not a JSON array ({err}); set format: jsonl for one object a line") from None
            if not isinstance(data, list):
                raise InputError(f"{path}: format json expects an array of objects at the top level")
            yield from ((n, row, 0) for n, row in enumerate(data, 1))
        else:
            import pyarrow.parquet as pq

            yield from ((n, row, 0) for n, row in enumerate(pq.read_table(path).to_pylist(), 1))

    @staticmethod
    def _json_row(text: str) -> Any:
        """The line's object; None (counted as a bad row) where it is not JSON."""
        try:
            return json.loads(text)
        except ValueError:
            return None

    def _csv_rows(self, path: Path, split: str) -> Iterator[tuple[int, Any, int]]:
        """The rows of one CSV file; a field over CSV_FIELD_LIMIT characters, or a file with no row, is an
        InputError naming the file."""
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        rows = 0
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                for row in self._csv_cells(reader, path, split):
                    rows += 1
                    yield row
            except csv.Error as err:
                if "field larger than field limit" in str(err):
                    raise InputError(f"{path}:{reader.line_num}: a field is longer than {csv.field_size_limit():,} "
                                     f"characters (an unclosed quote?); check that the file is the benchmark's "
                                     f"CSV") from None
                raise InputError(f"{path}:{reader.line_num}: not readable as CSV ({err})") from None
        if not rows:
            raise InputError(f"{self.file}: {path} has no rows" + (" below its header" if reader.line_num else "")
                             + "; put the benchmark's questions in it or remove the file")

    def _csv_cells(self, reader: Any, path: Path, split: str) -> Iterator[tuple[int, Any, int]]:
        positions = [v for v in self._refs(split) if isinstance(v, int)]
        width = max(positions) + 1 if positions else 0
        line = reader.line_num + 1
        header = None
        for row in reader:
            start, line = line, reader.line_num + 1
            if self.header and header is None:
                header = row
                self._check_header(header, path, split)
                continue
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if header is not None:
                if len(row) != len(header):
                    yield start, f"{len(row)} columns, expected {len(header)}", 0
                    continue
                yield start, dict(zip(header, row, strict=True)) | dict(enumerate(row)), 0
            else:
                yield start, (dict(enumerate(row)) if len(row) == width else
                              f"{len(row)} columns, expected {width}"), 0

    def _refs(self, split: str) -> list[Any]:
        """Every column the fields name (the answer only where the split has answers)."""
        refs = []
        for key, value in self.fields.items():
            if key != "answer" or self.has_answers(split):
                refs += value if isinstance(value, list) else [value]
        return [r for r in refs if r is not None]

    def _check_header(self, header: list[str], path: Path, split: str) -> None:
        for key, value in self.fields.items():
            if key == "answer" and not self.has_answers(split):
                continue
            for ref in value if isinstance(value, list) else [value]:
                if isinstance(ref, str) and ref not in header:
                    raise InputError(f"{self.file}: fields.{key}: column '{ref}' is not in the header of {path} "
                                     f"({', '.join(header)})")

    def _get(self, row: dict, key: str) -> Any:
        ref = self.fields.get(key)
        if ref is None:
            return None
        if isinstance(ref, list):
            return [row.get(r) for r in ref]
        return row.get(ref)

    def _parse(self, row: Any, path: Path, line: int, subject: str, split: str,
               report: LoadReport) -> Question | None:
        if isinstance(row, str):  # a width problem found while reading
            report.skip(path, line, row)
            return None
        if not isinstance(row, dict):
            report.skip(path, line, "not a JSON object")
            return None
        question, choices = self._get(row, "question"), self._get(row, "choices")
        if self.format != "csv" and isinstance(choices, list):
            choices = [c for c in choices if c not in (None, "")]  # rows with fewer choices (no "D" key)
        if question is None or not choices or any(c is None for c in choices):
            report.skip(path, line, "missing question or choices")
            return None
        choices = tuple(str(c) for c in choices)
        if len(choices) > len(self.letters):
            report.skip(path, line, f"{len(choices)} choices, more than the letters {', '.join(self.letters)}")
            return None
        answer = None
        if self.has_answers(split):
            answer = self._answer(self._get(row, "answer"), choices)
            if isinstance(answer, tuple):
                report.skip(path, line, answer[0])
                return None
        qid = self._get(row, "id")
        passage = self._get(row, "passage")
        return Question(self.name, subject, split, str(qid).strip() if qid is not None else str(line), str(question),
                        choices, answer, f"{path}:{line}", str(passage) if passage is not None else "")

    def _answer(self, raw: Any, choices: tuple[str, ...]) -> str | tuple[str]:
        letters = self.letters[: len(choices)]
        if self.answer_format == "index":
            try:
                index = int(raw)
            except (TypeError, ValueError):
                return (f"answer '{raw}' is not an index",)
            return letters[index] if 0 <= index < len(letters) else (f"answer index {index} out of range",)
        if self.answer_format == "text":
            text = str(raw).strip() if raw is not None else ""
            hits = [i for i, c in enumerate(choices) if c.strip() == text]
            return letters[hits[0]] if hits else (f"answer '{raw}' is not among the choices",)
        answer = str(raw).strip().upper() if raw is not None else ""
        if answer not in letters:
            return (f"answer '{raw}' is not one of {', '.join(letters)}" if answer else "missing answer",)
        return answer


def first_bad_utf8(path: Path) -> tuple[int, int]:
    """(line, byte offset) of the first byte of path that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return data.count(b"\n", 0, err.start) + 1, err.start
    return 1, 0


def builtin_suites() -> dict[str, Path]:
    """name -> YAML file of the suites scored when eval.suites is empty (`default: N`, in order of N)."""
    found = []
    for path in sorted((suite_dirs()[-1]).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if spec.get("default"):
            found.append((int(spec["default"]), spec.get("name", path.stem), path))
    return {name: path for _, name, path in sorted(found)}


class _Registry(dict):
    """SUITES: the default suites by name, read from configs/eval when first used."""

    def _fill(self) -> None:
        if not super().__len__():
            self.update(builtin_suites())

    def __iter__(self):  # noqa: D105
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)


SUITES: dict[str, Path] = _Registry()


def open_suite(name: str, benchmarks_dir: str | Path, template: str = "official",
               dirs: list[str] | tuple[str, ...] = ()) -> Suite:
    """The suite of a name in eval.suites (or a path to its YAML file), checked."""
    path = suite_file(name, suite_dirs(dirs))
    spec = read_spec(path)
    if spec.get("derive"):
        from triglot.eval.derive import DerivedSuite

        return DerivedSuite(spec, path, benchmarks_dir, template, dirs)
    if spec.get("kind") == "generation":
        from triglot.eval.generation import GenerationSuite

        return GenerationSuite(spec, path, benchmarks_dir, template)
    return Suite(spec, path, benchmarks_dir, template)
