"""A stage whose manifest matches its inputs and config is skipped; any change reruns it."""

from __future__ import annotations

import json
from pathlib import Path

from triglot.config import compose
from triglot.manifest import MANIFEST, StageManifest


def upper_stage(src: Path, out: Path, config: dict, force: bool = False) -> bool:
    """A real (small) stage: upper-cases its input. Returns True when it did the work."""
    m = StageManifest.open(out, stage="upper", config=config, inputs=[src])
    if m.is_current() and not force:
        return False
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.txt").write_text(src.read_text().upper())
    m.write(outputs=[out / "result.txt"], counts={"chars": len(src.read_text())})
    return True


def test_skip_and_rerun(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("hello")
    out = tmp_path / "out"
    cfg = {"mode": "upper"}
    assert upper_stage(src, out, cfg)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"] == {"chars": 5}
    assert manifest["inputs"][0]["sha256"] and manifest["outputs"][0]["sha256"]
    assert manifest["code_version"] and manifest["timings"]["seconds"] >= 0
    assert not upper_stage(src, out, cfg), "an up-to-date stage must be skipped"
    assert upper_stage(src, out, cfg, force=True), "--force reruns"
    assert upper_stage(src, out, {"mode": "changed"}), "a changed config reruns"
    src.write_text("world")
    assert upper_stage(src, out, {"mode": "changed"}), "a changed input reruns"
    assert (out / "result.txt").read_text() == "WORLD"
    (out / "result.txt").write_text("truncated!")
    assert upper_stage(src, out, {"mode": "changed"}), "a damaged output reruns"


def test_folder_inputs_and_typed_config(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    cfg = compose({"train": {"lr": 0.01}}).train
    m = StageManifest.open(tmp_path / "out", "train", cfg, [folder])
    m.write(outputs=[folder])
    assert StageManifest.open(tmp_path / "out", "train", cfg, [folder]).is_current()
    (folder / "b.txt").write_text("b")
    assert not StageManifest.open(tmp_path / "out", "train", cfg, [folder]).is_current()


def test_missing_input_is_recorded_and_not_current(tmp_path: Path) -> None:
    m = StageManifest.open(tmp_path / "out", "x", {}, [tmp_path / "nope"])
    assert m.inputs == [{"path": str(tmp_path / "nope"), "missing": True}]
    assert not m.is_current()
