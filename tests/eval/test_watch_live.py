"""`eval --watch` against a run that is still training: it follows to the end, on a W&B run of its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from triglot.eval.runner import watch

from triglot.config import load_config
from triglot.testing import start_torchrun, write_synthetic_pack

pytestmark = pytest.mark.distributed


def _experiment(tmp_path: Path, run: Path, data: Path, tokenizer: Path, benchmarks: Path) -> Path:
    config = {
        "defaults": {"model": "tiny", "hardware": "cpu"},
        "run": {"name": "watchtest", "dir": str(run), "seed": 3},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_kv_heads": 2,
                  "tokenizer": str(tokenizer)},
        "tracking": {"mode": "offline", "group": "grp-watch-7"},
        "train": {"steps": 60, "seq_len": 32, "global_batch_size": 4, "micro_batch_size": 4, "warmup_steps": 1,
                  "val_every": 0, "data_dir": str(data), "checkpoint": {"every": 20, "export_hf": True}},
        "eval": {"benchmarks_dir": str(benchmarks), "subjects": ["mmlu/anatomy"], "limit_per_subject": 2,
                 "batch_size": 2, "watch_interval_s": 0.2, "watch_idle_timeout_s": 0},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _previous_run(run: Path, tiny_hf: Path) -> None:
    """What an earlier, finished run leaves: an export and the training stage's manifest."""
    import shutil

    shutil.copytree(tiny_hf, run / "export")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "manifest.json").write_text(json.dumps({"stage": "train", "config_hash": "old"}))


def test_watch_follows_a_running_training_to_its_end(tmp_path: Path, tiny_hf: Path, benchmarks: Path) -> None:
    run = tmp_path / "run"
    data = write_synthetic_pack(tmp_path / "packed", vocab_size=500, docs=120, seed=5)
    exp = _experiment(tmp_path, run, data, tiny_hf, benchmarks)
    _previous_run(run, tiny_hf)
    proc = start_torchrun(1, ["train", str(exp)], log_path=tmp_path / "train.log")
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints" / "RUNNING").is_file():  # training has started
            assert proc.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        done = watch(load_config(str(exp)), run)
        # It stopped only once this training had written its own stage manifest, not on the old one.
        manifest = json.loads((run / "checkpoints" / "manifest.json").read_text())
        assert proc.wait(timeout=300) == 0, (tmp_path / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert manifest["config_hash"] != "old" and manifest["stage"] == "train"
    assert [d["step"] for d in done] == [20, 40, 60]
    assert not (run / "checkpoints" / "RUNNING").exists()

    # Its own W&B run, "<training run id>-eval", in the training run's group.
    run_id = (run / "wandb_run_id").read_text().strip()
    offline = {p.name.rsplit("-", 1)[-1] if not p.name.endswith("-eval") else "eval": p
               for p in (run / "wandb").glob("offline-run-*")}
    assert run_id in offline and "eval" in offline, sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert offline["eval"].name.endswith(f"{run_id}-eval")
    for folder in (offline[run_id], offline["eval"]):
        (log_file,) = folder.glob("*.wandb")
        assert b"grp-watch-7" in log_file.read_bytes()  # the group both runs share
