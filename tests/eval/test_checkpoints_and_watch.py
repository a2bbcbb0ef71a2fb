"""Checkpoint resolution, following a training run with --watch, and the command line's user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from triglot.eval import checkpoints
from triglot.eval.runner import run_eval_stage, watch
from triglot.train.checkpoint import commit

from triglot.cli import main
from triglot.config import save_config
from triglot.errors import InputError


def _fake_run(run: Path, tiny_hf: Path, complete: list[int], unfinished: list[int] = (), export: bool = True) -> Path:
    """A run folder laid out as training leaves it: step-XXXXXXXX/{hf/, COMPLETE} and export/."""
    for step in [*complete, *unfinished]:
        folder = run / "checkpoints" / f"step-{step:08d}"
        shutil.copytree(tiny_hf, folder / "hf")
        if step in complete:
            commit(folder, step)
    if export:  # a finished run: its export and the training stage's manifest
        shutil.copytree(tiny_hf, run / "export")
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run / "checkpoints" / "manifest.json").write_text(json.dumps({"stage": "train"}), encoding="utf-8")
    return run


def test_resolution(tmp_path: Path, tiny_hf: Path) -> None:
    run = _fake_run(tmp_path / "run", tiny_hf, complete=[10, 20], unfinished=[30], export=False)
    newest = checkpoints.default_checkpoint(run)
    assert newest.step == 20 and newest.hf_dir == run / "checkpoints" / "step-00000020" / "hf"
    assert checkpoints.resolve(newest.hf_dir).label == "step-00000020"
    with pytest.raises(InputError, match="COMPLETE"):
        checkpoints.resolve(run / "checkpoints" / "step-00000030")
    with pytest.raises(InputError, match="does not exist"):
        checkpoints.resolve(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no checkpoint to score"):
        checkpoints.default_checkpoint(tmp_path / "empty")
    hf = checkpoints.resolve(tiny_hf)
    assert hf.hf_dir == tiny_hf and hf.step is None


def test_stage_defaults_to_the_newest_checkpoint(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config) -> None:
    run = _fake_run(tmp_path / "run", tiny_hf, complete=[10, 20], export=True)
    cfg = eval_config(run, benchmarks, subjects=["mmlu/anatomy"], limit_per_subject=2)
    summary = run_eval_stage(cfg)
    assert summary["step"] == 20 and Path(summary["out_dir"]) == run / "eval" / "step-00000020"
    assert (run / "eval" / "summary.md").read_text(encoding="utf-8").startswith("# Eval of")
    res = json.loads((run / "eval" / "step-00000020" / "results.json").read_text(encoding="utf-8"))
    assert res["lineage"]["step"] == 20 and res["lineage"]["model_config"]["model_type"] == "llama"
    assert {"torch", "transformers"} <= set(res["packages"]) and res["timing"]["questions"] == 2
    assert res["scores"]["mmlu"]["overall"]["questions"] == 2


def test_watch_scores_each_checkpoint_against_its_step(tmp_path: Path, benchmarks: Path, tiny_hf: Path,
                                                       eval_config) -> None:
    run = _fake_run(tmp_path / "run", tiny_hf, complete=[10, 20], unfinished=[30])
    cfg = eval_config(run, benchmarks, subjects=["cmmlu/agronomy"], limit_per_subject=2, watch_interval_s=0.01)
    done = watch(cfg, run)
    assert [d["step"] for d in done] == [10, 20]
    for step in (10, 20):
        metrics = [json.loads(line) for line in
                   (run / "eval" / f"step-{step:08d}" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        assert metrics[-1]["eval/train_step"] == step and "eval/cmmlu/acc_weighted" in metrics[-1]
    assert (run / "wandb_run_id").is_file()  # the run's W&B id; eval logs to "<id>-eval"
    assert list((run / "wandb").glob("offline-run-*"))


def test_cli_reports_user_errors(tmp_path: Path, benchmarks: Path, tiny_hf: Path, eval_config,
                                 capsys: pytest.CaptureFixture) -> None:
    config = save_config(eval_config(tmp_path, benchmarks), tmp_path / "config.yaml")
    assert main(["eval", str(config), "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["eval", str(config), f"eval.benchmarks_dir={tmp_path}", "--checkpoint", str(tiny_hf)]) == 2
    assert f"{tmp_path}/ceval/val" in capsys.readouterr().err
    assert main(["eval", str(config), "eval.suites=[nope]", "--checkpoint", str(tiny_hf)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
