"""Checkpoint verification by checksum: a same-size corruption is skipped (training, eval, stage manifest),
markers without checksums still load, and a disk that fills up ends the save with one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from triglot.eval import checkpoints as eval_checkpoints
from triglot.train.checkpoint import COMPLETE, commit, complete_checkpoints, latest_checkpoint, verify

from triglot.manifest import StageManifest


def _checkpoint(root: Path, step: int, hf: bool = False) -> Path:
    folder = root / f"step-{step:08d}"
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(bytes(range(256)) * 40)
    (folder / "rng-rank00000.pt").write_bytes(b"r" * 64)
    if hf:
        (folder / "hf").mkdir()
        (folder / "hf" / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    commit(folder, step)
    return folder


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: a size check cannot see it


def test_same_size_corruption_is_skipped_naming_the_file(tmp_path: Path, caplog) -> None:
    for step in (2, 4):
        _checkpoint(tmp_path, step)
    shard = "state/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    _flip_one_byte(tmp_path / "step-00000004" / shard)
    with caplog.at_level("WARNING"):
        assert latest_checkpoint(tmp_path) == (2, tmp_path / "step-00000002")
    assert "step-00000004" in caplog.text and shard in caplog.text and "checksum" in caplog.text
    assert [s for s, _ in complete_checkpoints(tmp_path, checksums=True)] == [2]


def test_markers_without_checksums_are_checked_by_size(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, 2)
    info = json.loads((folder / COMPLETE).read_text())
    (folder / COMPLETE).write_text(json.dumps({"step": 2, "files": info["files"]}))  # an older marker
    assert verify(folder) == ""
    (folder / "rng-rank00000.pt").write_bytes(b"r" * 10)
    assert "rng-rank00000.pt" in verify(folder)


def test_eval_skips_the_checkpoints_training_skips(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (10, 20):
        _checkpoint(run / "checkpoints", step, hf=True)
    _flip_one_byte(run / "checkpoints" / "step-00000020" / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    assert eval_checkpoints.default_checkpoint(run).step == 10
    with pytest.raises(Exception, match="checksum"):
        eval_checkpoints.resolve(run / "checkpoints" / "step-00000020")


def test_damaged_final_checkpoint_makes_the_stage_stale(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    final = _checkpoint(root, 4)
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"m" * 32)
    StageManifest.open(root, "train", {"a": 1}, []).write(outputs=[export, final / COMPLETE])
    assert StageManifest.open(root, "train", {"a": 1}, []).is_current()
    _flip_one_byte(final / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    assert not StageManifest.open(root, "train", {"a": 1}, []).is_current()
    shutil.rmtree(final)
    assert not StageManifest.open(root, "train", {"a": 1}, []).is_current()
