"""Suites load from the real files with the counts the data README states; bad input is reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from triglot.eval.suites import SUITES, LoadReport, open_suite
from triglot.eval.tasks import build_requests, load_suites

from triglot.errors import ConfigError, InputError

# README table folder (and HKCanto set) -> suite name here.
README_NAMES = {"cmmlu": "cmmlu", "ceval": "ceval", "mmlu": "mmlu", "canto-mmlu": "hkcanto-mmlu",
                "cultural": "hkcanto-cultural", "dse": "hkcanto-dse", "hk-law": "hkcanto-law"}


def readme_counts(readme: Path) -> dict[str, dict[str, int]]:
    """{suite: {"subjects": n, "dev": n, ...}} parsed from the benchmarks table of data/README.md."""
    expected: dict[str, dict[str, int]] = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] not in ("cmmlu", "ceval", "mmlu", "hkcanto_eval"):
            continue
        parts = cells[3].split(";") if cells[0] == "hkcanto_eval" else [f"{cells[0]}: {cells[3]}"]
        for part in parts:
            name, _, text = part.partition(":") if ":" in part else part.strip().partition(" ")
            counts = {"subjects": int(re.search(r"(\d+)", text).group(1))}
            counts |= {split: int(n.replace(",", "")) for split, n in re.findall(r"\b(dev|val|test) ([\d,]+)", text)}
            expected[README_NAMES[name.strip()]] = counts
    return expected


def test_readme_table_parsed(shared_data: Path) -> None:
    expected = readme_counts(shared_data / "README.md")
    assert set(expected) == set(README_NAMES.values())
    assert expected["ceval"] == {"subjects": 52, "dev": 260, "val": 1346, "test": 12342}
    assert expected["hkcanto-dse"] == {"subjects": 17}


def test_every_suite_loads_with_readme_counts(shared_data: Path, benchmarks: Path) -> None:
    expected = readme_counts(shared_data / "README.md")
    for name in SUITES:
        suite = open_suite(name, benchmarks)
        subjects = suite.subjects()
        want = expected.get(name, {})
        if "subjects" in want:
            assert len(subjects) == want["subjects"], name
        for split in [s for s in ("dev", "val", "test") if s in want] or ["dev", "test"]:
            report = LoadReport()
            rows = sum(len(suite.load(s, split, report)) for s in subjects)
            # README counts are rows in the files: loaded plus skipped-as-malformed.
            if split in want:
                assert rows + len(report.skipped) == want[split], (name, split)
            assert rows > 0 and len(report.skipped) <= 2, (name, split, report.skipped)


def test_real_malformed_rows_are_reported_with_file_and_line(benchmarks: Path) -> None:
    suite = open_suite("hkcanto-dse", benchmarks)
    report = LoadReport()
    rows = suite.load("ict_en", "test", report)
    assert [(Path(s["file"]).name, s["line"]) for s in report.skipped] == [("ict_en_test.csv", 1)]
    assert "not one of A, B, C, D" in report.skipped[0]["reason"]
    assert rows and all(q.answer in "ABCD" for q in rows)


def test_ceval_test_split_has_no_answers_and_five_option_set(benchmarks: Path) -> None:
    ceval = open_suite("ceval", benchmarks)
    test = ceval.load("computer_network", "test", LoadReport())
    assert test[0].answer is None and test[0].qid == "0" and len(test[0].choices) == 4
    ling = open_suite("hkcanto-linguistic", benchmarks).load("phonology", "test", LoadReport())
    assert all(len(q.choices) == 5 and q.answer in "ABCDE" for q in ling)
    assert ceval.categories("computer_network") == ["STEM"] and ceval.subject_name("computer_network") == "计算机网络"
    assert open_suite("cmmlu", benchmarks).categories("ancient_chinese") == ["Social Science", "China specific"]


def test_mmlu_crlf_files_read_cleanly(benchmarks: Path) -> None:
    mmlu = open_suite("mmlu", benchmarks)
    crlf = [s for s in mmlu.subjects() if b"\r\n" in mmlu.path(s, "test").read_bytes()]
    assert crlf, "expected some CRLF files in the MMLU copy"
    for q in mmlu.load(crlf[0], "test", LoadReport()):
        assert "\r" not in q.answer and not q.choices[-1].endswith("\r")


def _copy_suite(benchmarks: Path, tmp_path: Path) -> Path:
    root = tmp_path / "benchmarks"
    for split in ("dev", "test"):
        (root / "mmlu" / split).mkdir(parents=True)
        shutil.copy(benchmarks / "mmlu" / split / f"anatomy_{split}.csv", root / "mmlu" / split)
    return root


def test_bad_rows_skipped_counted_and_named(benchmarks: Path, tmp_path: Path) -> None:
    root = _copy_suite(benchmarks, tmp_path)
    path = root / "mmlu" / "test" / "anatomy_test.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "only,three,columns"
    lines[4] = "Question?,a,b,c,d,"  # missing answer
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = LoadReport()
    rows = open_suite("mmlu", root).load("anatomy", "test", report)
    assert len(rows) == len(lines) - 2
    assert [(s["file"], s["line"]) for s in report.skipped] == [(str(path), 3), (str(path), 5)]
    assert "3 columns, expected 6" in report.skipped[0]["reason"] and "missing answer" in report.skipped[1]["reason"]


def test_missing_or_empty_suite_folder_is_an_input_error(benchmarks: Path, tmp_path: Path, eval_config) -> None:
    root = _copy_suite(benchmarks, tmp_path)
    with pytest.raises(InputError, match=re.escape(str(root / "cmmlu" / "data" / "test"))):
        load_suites(eval_config(tmp_path, root, suites=["cmmlu"], subjects=[]).eval)
    with pytest.raises(ConfigError, match="mmlu/nonexistent"):
        load_suites(eval_config(tmp_path, root, suites=["mmlu"], subjects=["mmlu/nonexistent"]).eval)
    (root / "ceval" / "val").mkdir(parents=True)
    with pytest.raises(InputError, match=re.escape(str(root / "ceval" / "val"))):
        load_suites(eval_config(tmp_path, root, suites=["ceval"], subjects=[]).eval)


def test_prompts_follow_the_official_templates(benchmarks: Path, tmp_path: Path, eval_config) -> None:
    cfg = eval_config(tmp_path, benchmarks, subjects=["ceval/computer_network", "mmlu/anatomy", "cmmlu/agronomy",
                                                      "hkcanto-cultural/food"], limit_per_subject=1)
    by_suite = {ls.suite.name: ls for ls in load_suites(cfg.eval)}
    ceval = build_requests(by_suite["ceval"], 1, "letter")[0]
    assert ceval.prompt.startswith("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n")
    assert ceval.prompt.endswith("\nA. 1\nB. 2\nC. 3\nD. 4\n答案：") and ceval.continuations == ("A", "B", "C", "D")
    assert ceval.prompt.count("\n答案：") == 2
    mmlu = build_requests(by_suite["mmlu"], 0, "text")[0]
    assert mmlu.prompt.startswith("The following are multiple choice questions (with answers) about  anatomy.\n\n")
    assert mmlu.prompt.endswith("\nAnswer:") and all(c.startswith(" ") for c in mmlu.continuations)
    cmmlu = build_requests(by_suite["cmmlu"], 0, "letter")[0]
    assert cmmlu.prompt.startswith("以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n题目：")
    assert cmmlu.prompt.endswith("\n答案是：")
    canto = build_requests(by_suite["hkcanto-cultural"], 0, "letter")[0]
    assert canto.prompt.startswith("The following are multiple choice questions (with answers) about food. "
                                   "DO NOT EXPLAIN.\n\n")
    assert canto.continuations == (" A", " B", " C", " D")
