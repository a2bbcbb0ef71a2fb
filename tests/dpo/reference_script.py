"""Run under torchrun: one DPO step through DpoTrainer, then the second step's loss and gradients against a plain
PyTorch DPO on the same pairs (each sequence run alone, reference = the starting weights). Rank 0 writes JSON."""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM
from triglot.train.dpo.data import collate_pairs
from triglot.train.dpo.stage import pipeline_dpo_config
from triglot.train.dpo.trainer import DpoTrainer
from triglot.train.engine import init_distributed
from triglot.train.sft.stage import resolve_start

from triglot.config import load_config
from triglot.dist import finish_rank, read_dist_env


def answer_logp(model, ids, mask) -> torch.Tensor:
    ids = torch.as_tensor(ids)[None]
    logits = model(input_ids=ids).logits[0, :-1].float()
    token = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return token[torch.as_tensor(mask[1:])].sum()


def plain_dpo(trainer, start_state, policy_state, step) -> tuple[float, dict]:
    """Mean over every pair of the global batch of -(1-e) logsig(b h) - e logsig(-b h), and its gradients."""
    cfg, sampler = trainer.cfg, trainer.sampler
    config = AutoConfig.from_pretrained(cfg.model.pretrained)
    config.vocab_size = trainer.vocab_size
    reference, policy = (AutoModelForCausalLM.from_config(config, dtype=torch.float32) for _ in range(2))
    reference.load_state_dict(start_state)
    policy.load_state_dict(policy_state)
    pairs = [sampler.conversation(j) for r in range(trainer.world) for g in trainer.layout.indices(step, r)
             for i in g for j in range(*sampler.span(i))]
    beta, eps, losses = float(cfg.dpo.beta), float(cfg.dpo.label_smoothing), []
    for d, c in pairs:
        data = sampler.datasets[d]
        (chosen, rejected), (mc, mr) = data.tokens[c], data.masks[c]
        with torch.no_grad():
            ref = answer_logp(reference, chosen, mc) - answer_logp(reference, rejected, mr)
        h = beta * (answer_logp(policy, chosen, mc) - answer_logp(policy, rejected, mr) - ref)
        losses.append(-(1 - eps) * F.logsigmoid(h) - eps * F.logsigmoid(-h))
    loss = torch.stack(losses).mean()
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in policy.named_parameters()}


def main() -> None:
    cfg = pipeline_dpo_config(load_config(sys.argv[1], sys.argv[3:]))
    model_dir, tokenizer_dir = resolve_start(cfg)
    cfg.model.pretrained = str(model_dir)
    init_distributed(cfg, read_dist_env())
    trainer = DpoTrainer(cfg, model_dir, tokenizer_dir)
    module = trainer.engine.module
    start_state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def batches(step):
        return [collate_pairs([trainer.sampler[i] for i in g]) for g in trainer.layout.indices(step, trainer.rank)]

    trainer.train_step(1, batches(0))  # a real step: the policy leaves the reference
    seen = {}
    step_fn = trainer.engine.step

    def observe_then_step(*args, **kwargs):  # gradients as the optimizer is about to use them (ZeRO-0: reduced)
        seen["grads"] = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
        seen["state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return step_fn(*args, **kwargs)

    trainer.engine.step = observe_then_step
    out = trainer.train_step(2, batches(1))
    if trainer.rank == 0:
        loss, grads = plain_dpo(trainer, start_state, seen["state"], 1)
        diffs = {n: float((seen["grads"][n] - g).abs().max()) for n, g in grads.items()}
        result = {"loss": out["loss"], "plain_loss": loss, "pairs": out["metrics"]["pairs"],
                  "pairs_per_rank": [len([j for g in trainer.layout.indices(1, r) for i in g
                                          for j in range(*trainer.sampler.span(i))]) for r in range(trainer.world)],
                  "max_grad_diff": max(diffs.values()), "max_grad": max(float(g.abs().max()) for g in grads.values()),
                  "params": len(diffs)}
        with open(sys.argv[2], "w") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    # Ends as triglot's own entry point does: a gloo rank left to interpreter teardown can abort after its work.
    main()
    finish_rank()
