"""Hostile suite files, benchmark CSVs and held-out texts: each is a ConfigError or InputError naming the file
(and the key or line), and the command line exits 2 with one line, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from triglot.eval.perplexity import read_heldout
from triglot.eval.suites import CSV_FIELD_LIMIT, LoadReport, open_suite

from triglot.config import compose, save_config
from triglot.errors import ConfigError, InputError

ROWS = [["What is 1+1?", "1", "2", "3", "4", "B"], ["What is 2+2?", "2", "3", "4", "5", "C"],
        ["What is 3+3?", "5", "6", "7", "8", "B"]]


def make_suite(root: Path, extra: str = "") -> Path:
    """A small headerless MMLU-shaped CSV suite in root/suites/tiny.yaml over root/bench/tiny/."""
    for split in ("dev", "test"):
        folder = root / "bench" / "tiny" / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"anatomy_{split}.csv").write_text("".join(",".join(r) + "\n" for r in ROWS), encoding="utf-8")
    spec = {"name": "tiny", "language": "en", "folder": "tiny",
            "files": {"dev": "dev/{subject}_dev.csv", "test": "test/{subject}_test.csv"}, "format": "csv",
            "header": False, "fields": {"question": 0, "choices": [1, 2, 3, 4], "answer": 5},
            "templates": {"official": {"source": "a test", "header": "About {subject}.\n\n", "answer_cue": "\nAnswer:",
                                       "answer_sep": " "}}}
    path = root / "suites" / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec) + extra, encoding="utf-8")
    return path


def load_all(path: Path, benchmarks: Path) -> int:
    suite = open_suite(str(path), benchmarks)
    suite.check(suite.default_split, True)
    return sum(len(suite.load(s, suite.default_split, LoadReport())) for s in suite.subjects())


def test_the_hostile_files_start_from_a_suite_that_loads(tmp_path: Path) -> None:
    assert load_all(make_suite(tmp_path), tmp_path / "bench") == 3


@pytest.mark.parametrize(("extra", "message"), [
    ("letters: 5\n", "'letters' must be a list of names"),
    ("no_answers: 5\n", "'no_answers' must be a list of names"),
    ("letters: []\n", "'letters' must be a list of names"),
])
def test_letters_and_no_answers_must_be_lists(tmp_path: Path, extra: str, message: str) -> None:
    path = make_suite(tmp_path, extra)
    with pytest.raises(ConfigError) as info:
        open_suite(str(path), tmp_path / "bench")
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_suite_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = make_suite(tmp_path)
    path.write_bytes(path.read_bytes() + b"description: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"tiny\.yaml: not UTF-8 text \(byte \d+\); save the suite file as UTF-8"):
        open_suite(str(path), tmp_path / "bench")


def test_header_must_be_a_real_bool(tmp_path: Path) -> None:
    """header: "no" is a string, and so truthy: the first question would silently become a header."""
    path = make_suite(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("header: false", 'header: "no"'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        open_suite(str(path), tmp_path / "bench")
    assert "'header' must be true or false, got 'no'" in str(info.value) and str(path) in str(info.value)


def test_an_absolute_files_pattern_is_a_config_error(tmp_path: Path) -> None:
    path = make_suite(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("test/{subject}_test.csv", "/etc/{subject}"),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_all(path, tmp_path / "bench")
    assert "files.test must be a path pattern below the suite's folder" in str(info.value)
    assert str(path) in str(info.value)


def _test_csv(tmp_path: Path) -> Path:
    return tmp_path / "bench" / "tiny" / "test" / "anatomy_test.csv"


def test_a_benchmark_csv_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = make_suite(tmp_path)
    csv_file = _test_csv(tmp_path)
    csv_file.write_bytes(csv_file.read_bytes() + b"\xff\xfe,a,b,c,d,A\n")
    with pytest.raises(InputError, match=rf"{re.escape(str(csv_file))}:4: not UTF-8 text"):
        load_all(path, tmp_path / "bench")


def test_long_questions_load_and_absurd_fields_are_refused(tmp_path: Path) -> None:
    path = make_suite(tmp_path)
    csv_file = _test_csv(tmp_path)
    with open(csv_file, "a", encoding="utf-8") as fh:  # 1 MB: over Python's 128 KiB default, a real long passage
        fh.write('"' + "x" * (1 << 20) + '",a,b,c,d,A\n')
    assert load_all(path, tmp_path / "bench") == 4
    with open(csv_file, "a", encoding="utf-8") as fh:  # an unclosed quote swallowing the rest of a big file
        fh.write('"' + "y" * (CSV_FIELD_LIMIT + 10) + '",a,b,c,d,A\n')
    with pytest.raises(InputError, match=rf"{re.escape(str(csv_file))}:5: a field is longer than [\d,]+ characters"):
        load_all(path, tmp_path / "bench")


def test_an_empty_benchmark_csv_is_refused(tmp_path: Path) -> None:
    path = make_suite(tmp_path)
    _test_csv(tmp_path).write_bytes(b"")
    with pytest.raises(InputError) as info:
        load_all(path, tmp_path / "bench")
    assert f"{_test_csv(tmp_path)} has no rows" in str(info.value) and str(path) in str(info.value)


def _heldout(path: Path) -> SimpleNamespace:
    return SimpleNamespace(language="en", path=str(path), field="text", max_chars=0)


def test_heldout_jsonl_line_that_is_not_json_names_key_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(InputError, match=rf"^eval.heldout: {re.escape(str(path))}:2: not JSON"):
        read_heldout(_heldout(path))


@pytest.mark.parametrize("name", ["h.txt", "h.jsonl", "h.csv"])
def test_heldout_file_that_is_not_utf8_names_key_file_and_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    good = {"h.txt": b"one\ntwo\n", "h.jsonl": b'{"text": "one"}\n{"text": "two"}\n', "h.csv": b"text\ntwo\n"}[name]
    path.write_bytes(good + b"\xff\xfe\x00bad\n")
    with pytest.raises(InputError, match=rf"^eval.heldout: {re.escape(str(path))}:3: not UTF-8 text"):
        read_heldout(_heldout(path))


def test_heldout_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        read_heldout(_heldout(tmp_path))


def _cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})


def test_cli_exits_2_with_one_line_for_a_binary_benchmark_csv(tmp_path: Path, repo_root: Path) -> None:
    path = make_suite(tmp_path)
    _test_csv(tmp_path).write_bytes(b"\xff\xfe\x00\x01")
    cfg = compose({"defaults": {"hardware": "cpu", "model": "tiny"}, "run": {"name": "e", "dir": str(tmp_path / "run")},
                   "tracking": {"mode": "disabled"},
                   "eval": {"suites": ["tiny"], "suite_dirs": [str(path.parent)],
                            "benchmarks_dir": str(tmp_path / "bench"), "checkpoint": str(tmp_path / "no-model")}})
    proc = _cli(repo_root, "eval", str(save_config(cfg, tmp_path / "config.yaml")))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{_test_csv(tmp_path)}:1: not UTF-8 text" in proc.stderr


def test_list_suites_reports_a_broken_suite_file_and_goes_on(tmp_path: Path, repo_root: Path) -> None:
    path = make_suite(tmp_path, "letters: 5\n")
    proc = _cli(repo_root, "eval", "--list-suites", f"eval.suite_dirs=[{path.parent}]",
                f"eval.benchmarks_dir={tmp_path / 'bench'}")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("tiny "))
    assert "not loadable here" in line
    assert "'letters' must be a list of names" in proc.stdout
