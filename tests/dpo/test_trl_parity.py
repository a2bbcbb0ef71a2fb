"""triglot's DPO and IPO losses on a batch of real pairs equal TRL's DPOTrainer on the same tokens and models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from triglot.train.dpo.data import build_dpo_sampler, collate_pairs, pack_pairs
from triglot.train.dpo.loss import preference_loss, sequence_logps

from tests.dpo.conftest import PREF
from triglot.config import compose

trl = pytest.importorskip("trl")
BETA = 0.2


def test_losses_equal_trl_dpo_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    cfg = compose({"train": {"seq_len": 128}, "dpo": {"datasets": [
        {"name": "en", "paths": [f"{PREF}/dpo_en_demo.json"], "max_samples": 3},
        {"name": "zh", "paths": [f"{PREF}/dpo_zh_demo.json"], "max_samples": 3}]}})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampler = build_dpo_sampler(cfg, tokenizer)  # the SFT chat template, answers masked
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    policy = copy.deepcopy(reference)
    torch.manual_seed(1)
    with torch.no_grad():  # the policy has moved off the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))

    examples, parts = [], []
    for d, data in enumerate(sampler.datasets):
        for c, ((chosen, rejected), (mc, mr)) in enumerate(zip(data.tokens, data.masks, strict=True)):
            start = int(mc.argmax())  # the answer runs from here to the end of the sequence in both
            assert start == int(mr.argmax()) and (chosen[:start] == rejected[:start]).all()
            assert mc[start:].all() and mr[start:].all()
            examples.append({"prompt_ids": chosen[:start].tolist(), "chosen_ids": chosen[start:].tolist(),
                             "rejected_ids": rejected[start:].tolist()})
            parts.append((d, c))
    batch = collate_pairs([pack_pairs(sampler.datasets, [part], 128, sampler.pad_id) for part in parts])
    with torch.no_grad():
        ref_logps = sequence_logps(reference, batch, "cpu")[0].view(-1, 2)
    logps, counts = sequence_logps(policy, batch, "cpu")

    trl_batch = DataCollatorForPreference(pad_token_id=sampler.pad_id)(examples)
    for loss_type in ("sigmoid", "ipo"):
        ours, _, _ = preference_loss(compose({"dpo": {"beta": BETA, "loss": loss_type}}).dpo, logps, counts,
                                     ref_logps)
        args = trl.DPOConfig(output_dir=str(tmp_path / loss_type), beta=BETA, loss_type=[loss_type], report_to=[],
                             use_cpu=True, per_device_train_batch_size=len(examples), max_length=None)
        trainer = trl.DPOTrainer(model=policy, ref_model=reference, args=args, processing_class=tokenizer,
                                 train_dataset=Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
        theirs = trainer.compute_loss(trainer.model, trl_batch)
        # Sums of ~60 fp32 token log-probs, differenced four times: agreement to float rounding.
        assert float(ours.mean()) == pytest.approx(float(theirs), abs=1e-4), loss_type
        assert abs(float(ours.mean()) - (0.6931 if loss_type == "sigmoid" else 1 / (4 * BETA ** 2))) > 1e-2
