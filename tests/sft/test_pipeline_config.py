"""The `sft` stage of a pipeline run: where it writes and which W&B group it joins."""

from __future__ import annotations

from pathlib import Path

from triglot.train.sft.stage import pipeline_sft_config

from triglot.config import compose


def test_fine_tuning_joins_the_pretraining_runs_group(tmp_path: Path) -> None:
    cfg = compose({"defaults": {"model": "tiny", "hardware": "cpu"}, "run": {"name": "qs", "dir": str(tmp_path)}})
    sft = pipeline_sft_config(cfg)
    assert sft.run.dir == str(tmp_path / "sft") and sft.run.name == "qs-sft"
    assert sft.tracking.group == "qs"
    grouped = compose({"defaults": {"model": "tiny"}, "run": {"name": "qs", "dir": str(tmp_path)},
                       "tracking": {"group": "sweep-7"}})
    assert pipeline_sft_config(grouped).tracking.group == "sweep-7"
