"""Resume at another world size, 2 ranks -> 1 and 1 -> 2, under ZeRO-1, 2 and 3, both ways the universal form
gets written: converted in the job (rank 0, the others waiting) or beforehand by `triglot ckpt reshard`.

Each stage trains two uninterrupted 4-step references (2 ranks and 1 rank, same global batch), checkpointing
at step 2. A copy of a reference's run folder, cut back to its step-2 checkpoint, resumes at the other world
size: it must resume from step 2 (not restart), run steps 3 and 4 only, and its losses must be the reference's
(to float tolerance: the reduction order changes with the world size), which they are only if the weights,
optimizer moments and schedule all continue from the checkpoint.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import read_metrics, write_experiment
from tests.train.resume_check import assert_resumed_from
from triglot.testing import REPO_ROOT, run_torchrun
from triglot.testing import test_env as child_env

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

STEPS, SAVED = 4, 2
SETTINGS = {"steps": STEPS, "checkpoint": {"every": SAVED, "keep_last": 5, "export_hf": False}}


@pytest.fixture(scope="module")
def references(tmp_path_factory, packed_dir):
    """(stage, world) -> the run folder of an uninterrupted run, trained on first use."""
    made: dict[tuple[int, int], Path] = {}

    def get(stage: int, world: int) -> Path:
        if (stage, world) not in made:
            tmp = tmp_path_factory.mktemp(f"ref-z{stage}-w{world}")
            exp = write_experiment(tmp / "exp.yaml", tmp / "run", packed_dir, zero_stage=stage, **SETTINGS)
            run_torchrun(world, ["train", str(exp)], timeout=400)
            made[stage, world] = tmp / "run"
        return made[stage, world]

    return get


def _cut_back(reference: Path, run: Path) -> Path:
    """A copy of `reference` whose newest checkpoint is the step-SAVED one (and no manifest saying the stage
    is done)."""
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns(f"step-{STEPS:08d}", "manifest.json"))
    return run / "checkpoints" / f"step-{SAVED:08d}"


@pytest.mark.parametrize("method", ["in-job", "reshard"])
@pytest.mark.parametrize("saved_on,resumed_on", [(2, 1), (1, 2)])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_resume_at_another_world_size_continues_from_the_checkpoint(tmp_path, packed_dir, references, stage,
                                                                     saved_on, resumed_on, method):
    reference = references(stage, saved_on)
    run = tmp_path / "run"
    folder = _cut_back(reference, run)
    assert not (folder / "universal").exists()
    marker = folder / "universal" / "COMPLETE"
    if method == "reshard":
        proc = subprocess.run([sys.executable, "-m", "triglot", "ckpt", "reshard", str(folder), "--timeout-s", "300"],
                              cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == str(folder / "universal") and marker.is_file()
        written = marker.stat().st_mtime_ns
    exp = write_experiment(tmp_path / "exp.yaml", run, packed_dir, zero_stage=stage, **SETTINGS)
    run_torchrun(resumed_on, ["train", str(exp)], timeout=400)

    assert_resumed_from(run / "checkpoints" / "metrics.jsonl", SAVED, STEPS)
    assert marker.is_file()
    if method == "reshard":  # the job loaded the form written beforehand, it did not convert again
        assert marker.stat().st_mtime_ns == written
    ours, theirs = read_metrics(run), read_metrics(reference)
    for step in range(SAVED + 1, STEPS + 1):
        assert ours[step]["loss"] == pytest.approx(theirs[step]["loss"], rel=1e-5), step


def _safetensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out |= load_file(shard)
    return out


@pytest.mark.parametrize("stage,world", [(0, 2), (1, 2), (2, 2), (1, 1)])
def test_offline_export_of_zero_0_1_2_checkpoints(tmp_path, references, stage, world):
    """`triglot export` of a ZeRO-0/1/2 checkpoint writes the saved fp32 weights exactly: DeepSpeed's own
    zero_to_fp32 for ZeRO-1/2, the model states file for ZeRO-0."""
    import torch

    folder = references(stage, world) / "checkpoints" / f"step-{STEPS:08d}"
    out = tmp_path / "hf"
    proc = subprocess.run([sys.executable, "-m", "triglot", "export", str(folder), str(out), "--max-shard-size",
                           "8KB"], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = _safetensors(out)
    assert len(list(out.glob("*.safetensors"))) > 1 and (out / "model.safetensors.index.json").is_file()
    if stage == 0:
        saved = torch.load(folder / "state" / "mp_rank_00_model_states.pt", map_location="cpu",
                           weights_only=False)["module"]
    else:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        saved = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag="state")
    saved = {k: v for k, v in saved.items() if k in ours or "lm_head" not in k}  # a tied head is saved once
    assert sorted(ours) == sorted(saved)
    assert all(torch.equal(ours[k], saved[k].to(ours[k].dtype)) for k in saved)
    from transformers import AutoModelForCausalLM

    _, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
