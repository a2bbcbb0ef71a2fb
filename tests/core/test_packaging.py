"""Only `triglot` is importable at the top level: a user's own train.py or eval.py never replaces a stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SHADOWS = ("train", "eval", "tokenizer", "launch", "data_pipeline")


def _shadowed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(f"print('USER MODULE {name} RAN')\nraise SystemExit(99)\n")
    return folder


def test_stage_runs_triglot_from_a_folder_holding_train_py(tmp_path: Path, repo_root: Path) -> None:
    folder = _shadowed_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exp = repo_root / "configs" / "experiments" / "quickstart.yaml"
    # `train` with no packed data stops with a clear input error: the stage's own code ran.
    for args, want_rc in ((["config", "show", str(exp)], 0),
                          (["train", str(exp), f"run.dir={tmp_path / 'run'}"], 2),
                          (["eval", str(exp), f"run.dir={tmp_path / 'run'}", "--checkpoint", str(tmp_path / "nope")], 2)):
        proc = subprocess.run([sys.executable, "-m", "triglot", *args], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=300)
        out = proc.stdout + proc.stderr
        assert "USER MODULE" not in out, out[-3000:]
        assert proc.returncode == want_rc, out[-3000:]


@pytest.mark.slow
def test_installed_distribution_has_only_triglot_at_top_level(tmp_path: Path, repo_root: Path) -> None:
    # Built from a copy: setuptools leaves build/ and *.egg-info next to the sources it builds.
    src = tmp_path / "src"
    shutil.copytree(repo_root, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                   "__pycache__", "wandb"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("triglot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"triglot", next(t for t in top if t.endswith(".dist-info"))}, sorted(top)
    for stage in SHADOWS:
        assert f"triglot/{stage}/__init__.py" in names
    # Package data travels with the stages.
    assert "triglot/launch/templates/job.sbatch.j2" in names
    assert "triglot/data_pipeline/resources/yue_markers.txt" in names
    assert "triglot/eval/data/mmlu_categories.json" in names
