"""Tiny model and tokenizer for the preference-tuning tests (the SFT tests' fixtures), and a run-folder writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.sft.conftest import tiny_model_dir, tiny_tokenizer_dir, tokenizer  # noqa: F401 (the SFT tests' fixtures)

PREF = "../shared/data/corpora/pref/dpo_zh_en_demo"


def write_run(root: Path, model_dir: Path, steps: int, zero: int, lora: bool = False, **dpo) -> Path:
    """A pipeline run folder whose SFT export is the tiny model, with a dpo stage on the shared pairs."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "sft" / "export").exists():
        shutil.copytree(model_dir, root / "sft" / "export")
    cfg = {
        "run": {"name": "dpo-test", "dir": str(root), "seed": 5, "stages": ["sft", "dpo"]},
        "tracking": {"mode": "disabled"},
        "hardware": {"name": "cpu"},
        "train": {"seq_len": 256, "global_batch_size": 4, "lr": 3e-3, "zero_stage": zero, "schedule": "constant"},
        "dpo": {
            "train": {"steps": steps, "checkpoint": {"every": 2}},
            "beta": 0.2,
            "datasets": [
                {"name": "en", "language": "en", "paths": [f"{PREF}/dpo_en_demo.json"], "max_samples": 40},
                {"name": "zh", "language": "zh-Hans", "paths": [f"{PREF}/dpo_zh_demo.json"], "max_samples": 40},
            ],
            "lora": {"enabled": lora, "rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "up_proj"]},
            **dpo,
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_metrics(run: Path) -> dict[int, dict]:
    """Last record per step of the dpo stage's metrics.jsonl."""
    out = {}
    for line in (run / "dpo" / "checkpoints" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec
    return out
