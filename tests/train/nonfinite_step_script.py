"""Run under torchrun by test_nonfinite_skip: real optimizer steps with poisoned micro-batches.

Token POISON (one past the data's vocabulary) has a NaN input embedding, so a micro-batch that
contains it has a NaN loss and the others do not. Step 1: rank 1's first micro-batch is poisoned;
the gradient must be that of the micro-batches of the other micro-step divided by their own target
tokens. Step 2:
every micro-batch is poisoned; nothing may change. Step 3 is clean and must train again.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from triglot.train.data import collate
from triglot.train.engine import init_distributed, param_groups
from triglot.train.model import build_model, packed_loss_sum
from triglot.train.trainer import Trainer, resolve_inputs

from triglot.config import load_config
from triglot.dist import finish_rank, read_dist_env

POISON = 128


def batches_for(trainer: Trainer, step: int, poisoned: list[bool]) -> list[dict]:
    groups = trainer.layout.indices(step, trainer.rank)
    batches = [collate([trainer.sampler[i] for i in g]) for g in groups]
    for mb, bad in zip(batches, poisoned, strict=True):
        if bad:
            mb["input_ids"][0, 3] = POISON
    return batches


def snapshot(obj):
    """Plain nested copy of a state (tensors cloned), for exact before/after comparison."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [snapshot(v) for v in obj]
    return obj


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(torch.nan_to_num(a, nan=7.0), torch.nan_to_num(b, nan=7.0))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def reference_step(trainer: Trainer, batches: list[dict], poisoned: list[bool]) -> tuple[torch.nn.Module, float, int]:
    """Plain PyTorch: kept micro-batches' summed loss / their global target tokens, one clipped AdamW step."""
    cfg = trainer.cfg
    ref = build_model(cfg, trainer.vocab_size, None)
    ref.load_state_dict({k: v.detach().clone() for k, v in trainer.engine.module.state_dict().items()})
    kept = [mb for mb, bad in zip(batches, poisoned, strict=True) if not bad]
    tokens = torch.tensor([float(sum(int((mb["labels"] != -100).sum()) for mb in kept))])
    dist.all_reduce(tokens)
    loss = sum((packed_loss_sum(ref, mb, "cpu")[0] for mb in kept), torch.zeros(()))
    (loss / tokens).backward()
    for p in ref.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
    norm = float(torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.train.optimizer.grad_clip))
    opt = cfg.train.optimizer
    adam = torch.optim.AdamW(param_groups(ref, opt.weight_decay), lr=cfg.train.lr, betas=tuple(opt.betas), eps=opt.eps)
    adam.step()
    return ref, norm, int(tokens.item())


def check_partly_dropped(trainer: Trainer) -> None:
    batches = batches_for(trainer, 0, [trainer.rank == 1, False])
    # Every rank drops that micro-step (see Trainer._kept_micro_batches).
    ref, ref_norm, ref_tokens = reference_step(trainer, batches, [True, False])
    out = trainer.train_step(1, batches)
    assert out["skipped_batches"] == trainer.world, out
    assert out["global_tokens"] == ref_tokens, (out["global_tokens"], ref_tokens)
    assert abs(out["grad_norm"] - ref_norm) <= 1e-5 * ref_norm, (out["grad_norm"], ref_norm)
    got = dict(trainer.engine.module.named_parameters())
    for name, p in ref.named_parameters():
        a, b = got[name].detach(), p.detach()
        if "embed_tokens" in name:  # the poisoned row is NaN in the reference only
            a, b = a[:POISON], b[:POISON]
        rel = float((a - b).norm() / b.norm())
        assert rel <= 1e-5, (name, rel)


def poison(trainer: Trainer) -> None:
    # On the module's weights only: DeepSpeed's fp32 master copy overwrites them after each step.
    with torch.no_grad():
        trainer.engine.module.get_input_embeddings().weight[POISON] = float("nan")


def check_all_dropped(trainer: Trainer) -> None:
    engine = trainer.engine
    poison(trainer)
    before = (snapshot(engine.module.state_dict()), snapshot(engine.optimizer.state_dict()),
              snapshot(engine.lr_scheduler.state_dict()), engine.get_lr(), engine.global_steps)
    skipped = engine.skipped_steps
    out = trainer.train_step(2, batches_for(trainer, 1, [True, True]))
    after = (snapshot(engine.module.state_dict()), snapshot(engine.optimizer.state_dict()),
             snapshot(engine.lr_scheduler.state_dict()), engine.get_lr(), engine.global_steps)
    assert out["skipped_batches"] == 2 * trainer.world and not out["step_applied"], out
    for name, a, b in zip(("weights", "optimizer", "scheduler", "lr", "global_steps"), before, after, strict=True):
        assert same(a, b), f"{name} changed by a step whose micro-batches were all dropped"
    assert engine.skipped_steps == skipped + 1
    out = trainer.train_step(3, batches_for(trainer, 2, [False, False]))
    assert out["step_applied"] and out["skipped_batches"] == 0, out
    assert not same(before[0], snapshot(engine.module.state_dict())), "a clean step after it did not train"


def main(config: str) -> None:
    # An untied embedding keeps the NaN row out of the output layer; the extra id is never in the data.
    cfg = load_config(config, ["model.tie_embeddings=false", f"model.vocab_size={POISON + 1}"])
    init_distributed(cfg, read_dist_env())
    trainer = Trainer(cfg, *resolve_inputs(cfg))
    poison(trainer)
    check_partly_dropped(trainer)
    check_all_dropped(trainer)
    print(f"NONFINITE CHECKS PASSED rank {trainer.rank}", flush=True)


if __name__ == "__main__":
    # Ends as triglot's own entry point does: a gloo rank left to interpreter teardown can abort after its work.
    main(sys.argv[1])
    finish_rank()
