"""Streamed ZeRO-3 export on two ranks into several safetensors shards, and `triglot export` of the checkpoint.

The run's model is above train.export.every_save_max_params, so checkpoints carry no hf/ folder and the
end-of-run export is the streamed one; both folders load with transformers and match the trained weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.conftest import write_experiment
from tests.train.test_export import _tokenizer
from triglot.testing import REPO_ROOT, run_torchrun, write_synthetic_pack
from triglot.testing import test_env as child_env

pytestmark = pytest.mark.distributed


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out |= load_file(shard)
    return out


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_streamed_zero3_export_and_offline_export(tmp_path):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(tmp_path / "tokenizer")
    packed = write_synthetic_pack(tmp_path / "packed", vocab_size=64, docs=80, seed=3)
    meta = json.loads((packed / "meta.json").read_text())
    (packed / "meta.json").write_text(json.dumps({**meta, "tokenizer": str(tokenizer)}))
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "exp.yaml", run, packed, steps=2, zero_stage=3,
                           export={"max_shard_size": "16KB", "every_save_max_params": 1000})
    run_torchrun(2, ["train", str(exp)], timeout=300)

    ckpt = run / "checkpoints" / "step-00000002"
    assert not (ckpt / "hf").exists()  # above every_save_max_params: no export with the checkpoint
    streamed = run / "export"
    index = json.loads((streamed / "model.safetensors.index.json").read_text())
    shards = sorted({*index["weight_map"].values()})
    assert len(shards) >= 3 and shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                                           for i in range(1, len(shards) + 1)]
    assert sorted(p.name for p in streamed.glob("*.safetensors")) == shards
    assert not list(run.glob("*.tmp"))
    exported, info = AutoModelForCausalLM.from_pretrained(streamed, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    # The training weights as DeepSpeed's own converter reads them from the ZeRO-3 shards.
    trained = AutoModelForCausalLM.from_config(exported.config).eval()
    missing, unexpected = trained.load_state_dict(get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="state"),
                                                  strict=False)
    assert not unexpected and all("lm_head" in k for k in missing)
    trained.tie_weights()
    ids = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_logits(exported.eval(), ids), _logits(trained, ids), rtol=0, atol=0)

    offline = tmp_path / "offline"
    proc = subprocess.run([sys.executable, "-m", "triglot", "export", str(ckpt), str(offline), "--max-shard-size",
                           "16KB"], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = _tensors(offline), _tensors(streamed)
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    reloaded = AutoModelForCausalLM.from_pretrained(offline).eval()
    torch.testing.assert_close(_logits(reloaded, ids), _logits(trained, ids), rtol=0, atol=0)
    assert (offline / "tokenizer_config.json").is_file()


def test_export_of_a_folder_that_is_no_checkpoint_is_a_user_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "triglot", "export", str(tmp_path), str(tmp_path / "out")],
                          cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a triglot checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
