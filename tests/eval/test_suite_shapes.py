"""The shipped suite shapes beyond the built-in four, on data made from the shared suites: CMMLU in
Traditional script derived by OpenCC, reading comprehension with textual choices, JSON-array multiple
choice with answer letters."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import opencc
from triglot.eval.runner import run_eval_stage
from triglot.eval.suites import LoadReport, open_suite
from triglot.eval.tasks import LoadedSuite, build_requests


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def make_shapes(benchmarks: Path, root: Path) -> dict[str, list[dict]]:
    """reading_comprehension/ from C-Eval rows (the question as passage, 2-4 of its choices, the answer's
    text) and yue_mc_json/ from HKCanto-Eval cultural rows as JSON arrays; cmmlu linked unchanged."""
    (root / "cmmlu").parent.mkdir(parents=True, exist_ok=True)
    (root / "cmmlu").symlink_to(benchmarks / "cmmlu")
    made: dict[str, list[dict]] = {}
    for split, src in (("dev", "dev"), ("test", "val")):
        rows = _csv(benchmarks / "ceval" / src / f"computer_network_{src}.csv")[1:]
        out = []
        for n, row in enumerate(rows):
            choices = row[2:6]
            gold = choices["ABCD".index(row[6])]
            keep = [c for c in choices if c != gold][: n % 3 + 1] + [gold]  # 2, 3 or 4 choices
            keep = sorted(keep, key=choices.index)
            out.append({"id": row[0], "passage": row[1], "question": "上文的答案是哪一项？", "choices": keep,
                        "answer": gold})
        folder = root / "reading_comprehension" / split
        folder.mkdir(parents=True)
        (folder / "computer_network.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out),
                                                       encoding="utf-8")
        made[f"rc/{split}"] = out
        rows = _csv(benchmarks / "hkcanto_eval/data/cultural" / split / f"food_{split}.csv")
        out = [{"id": str(i), "question": r[0], "A": r[1], "B": r[2], "C": r[3], "D": r[4], "answer": r[5]}
               for i, r in enumerate(rows)]
        for i, r in enumerate(out):
            if i % 4 == 1 and r["answer"] != "D":
                del r["D"]  # a row with three choices: no "D" key at all
        folder = root / "yue_mc_json" / split
        folder.mkdir(parents=True)
        (folder / "food.json").write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
        made[f"json/{split}"] = out
    return made


def test_traditional_cmmlu_is_derived_by_opencc(benchmarks: Path) -> None:
    cc = opencc.OpenCC("s2t")
    trad, simp = open_suite("cmmlu-traditional", benchmarks), open_suite("cmmlu", benchmarks)
    assert trad.language == "zh-Hant" and trad.script == "Traditional" and "cmmlu" in trad.derived_from
    assert trad.subjects() == simp.subjects()
    rows, base = trad.load("agronomy", "test", LoadReport()), simp.load("agronomy", "test", LoadReport())
    assert len(rows) == len(base) > 100
    for t, s in zip(rows, base, strict=True):
        assert t.question == cc.convert(s.question) and t.choices == tuple(cc.convert(c) for c in s.choices)
        assert t.answer == s.answer and t.suite == "cmmlu-traditional"
    assert sum(t.question != s.question for t, s in zip(rows, base, strict=True)) > len(rows) // 2
    assert trad.subject_name("agronomy") == "農學" and trad.categories("agronomy") == simp.categories("agronomy")
    req = build_requests(LoadedSuite(trad, "test", rows[:1], LoadReport()), 0, "letter")[0]
    assert req.prompt.startswith("以下是關於農學的單項選擇題，請直接給出正確答案的選項。\n\n題目：")


def test_reading_comprehension_and_json_array_shapes_load(benchmarks: Path, tmp_path: Path) -> None:
    root = tmp_path / "bench"
    made = make_shapes(benchmarks, root)
    rc = open_suite("reading-comprehension", root)
    rows = rc.load("computer_network", "test", LoadReport())
    assert len(rows) == len(made["rc/test"])
    assert {len(q.choices) for q in rows} == {2, 3, 4}
    for q, m in zip(rows, made["rc/test"], strict=True):
        assert q.passage == m["passage"] and q.choices[ord(q.answer) - 65] == m["answer"]
    req = build_requests(LoadedSuite(rc, "test", rows[:1], LoadReport()), 1, "letter")[0]
    assert req.prompt.count("文章：") == 2 and req.letters == tuple("ABCD"[: len(rows[0].choices)])
    js = open_suite("yue-mc-json", root)
    rows = js.load("food", "test", LoadReport())
    assert [(q.question, q.answer) for q in rows] == [(m["question"], m["answer"]) for m in made["json/test"]]
    assert [len(q.choices) for q in rows] == [4 if "D" in m else 3 for m in made["json/test"]]
    assert 3 in {len(q.choices) for q in rows}


def test_shapes_score_and_are_labelled(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config) -> None:
    root = tmp_path / "bench"
    make_shapes(benchmarks, root)
    with open(root / "reading_comprehension" / "test" / "computer_network.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"passage": "p", "question": "q", "choices": ["a", "b"], "answer": "c"}) + "\n")
    cfg = eval_config(tmp_path, root, checkpoint=str(tiny_hf), num_fewshot=1, limit_per_subject=3,
                      suites=["cmmlu-traditional", "reading-comprehension", "yue-mc-json"],
                      subjects=["cmmlu-traditional/agronomy", "computer_network", "food"])
    out = Path(run_eval_stage(cfg)["out_dir"])
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {k: v["overall"]["questions"] for k, v in res["scores"].items()} == {
        "cmmlu-traditional": 3, "reading-comprehension": 3, "yue-mc-json": 3}
    assert "OpenCC s2t" in res["suites"]["cmmlu-traditional"]["derived_from"]
    assert res["scores"]["cmmlu-traditional"]["language"] == "zh-Hant"
    skipped = res["skipped_rows"]["reading-comprehension"]
    assert [v["rows"] for v in skipped.values()] == [1] and "not among the choices" in next(iter(skipped.values()))[
        "first_reason"]
