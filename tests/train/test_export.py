"""Hugging Face export from ZeRO-0 and ZeRO-3: transformers loads it, logits match the trained state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.conftest import write_experiment
from triglot.testing import run_torchrun, write_synthetic_pack

pytestmark = pytest.mark.distributed


def _tokenizer(folder: Path) -> Path:
    """A small byte-level BPE tokenizer with special tokens, saved the way transformers loads it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>", "<bos>", "<pad>"])
    tok.train_from_iterator(["hello world 你好 世界 佢哋", "good morning 早晨 食咗飯未"] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>", pad_token="<pad>")
    fast.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("stage", [0, 3])
def test_export_loads_and_matches_the_checkpoint(tmp_path, stage):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _tokenizer(tmp_path / "tokenizer")
    packed = write_synthetic_pack(tmp_path / "packed", vocab_size=64, docs=80, seed=3)
    meta = json.loads((packed / "meta.json").read_text())
    (packed / "meta.json").write_text(json.dumps({**meta, "tokenizer": str(tokenizer)}))
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "exp.yaml", run, packed, steps=2, zero_stage=stage)
    run_torchrun(2, ["train", str(exp)], timeout=300)

    ckpt = run / "checkpoints" / "step-00000002"
    exported = AutoModelForCausalLM.from_pretrained(ckpt / "hf").eval()
    assert exported.config.vocab_size == len(AutoTokenizer.from_pretrained(tokenizer))  # grown to the tokenizer
    assert len(AutoTokenizer.from_pretrained(run / "export")) == len(AutoTokenizer.from_pretrained(tokenizer))
    # The training state read back from the ZeRO shards by DeepSpeed's own converter.
    if stage == 0:  # no ZeRO partitions: the engine's model states file holds the whole module
        state = torch.load(ckpt / "state" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    else:
        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="state")
    trained = AutoModelForCausalLM.from_config(exported.config).eval()
    missing, unexpected = trained.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing)
    trained.tie_weights()
    ids = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, trained(ids).logits, rtol=0, atol=1e-5)
        final = AutoModelForCausalLM.from_pretrained(run / "export").eval()
        torch.testing.assert_close(final(ids).logits, exported(ids).logits, rtol=0, atol=0)
