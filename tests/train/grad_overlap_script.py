"""Run under torchrun by test_grad_overlap: the overlapped all-reduce against DeepSpeed's own, ZeRO-0, 1 and 2.

For each stage, two trainers from the same weights take the same steps (two micro-batches per rank, so
one of them accumulates), one with train.overlap_grad_reduce and one without. Every weight must be
bit-identical after each step: with two ranks each element is one fp32 sum and one exact halving either
way. The overlapped one must have launched all-reduces before its backward returned. Then an engine
whose model has a parameter no forward uses (its gradient stays None) must still match, reduced as zeros.
"""

from __future__ import annotations

import math
import sys

import torch
from triglot.train.data import collate
from triglot.train.engine import build_engine, init_distributed
from triglot.train.model import build_model, packed_loss_sum
from triglot.train.trainer import Trainer, resolve_inputs

from triglot.config import load_config
from triglot.dist import finish_rank, read_dist_env

STEPS = 3
STAGES = (0, 1, 2)


def batches(trainer: Trainer, step: int) -> list[dict]:
    return [collate([trainer.sampler[i] for i in g]) for g in trainer.layout.indices(step, trainer.rank)]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, what: str) -> None:
    other = dict(b.named_parameters())
    for name, p in a.named_parameters():
        assert torch.equal(p.detach(), other[name].detach()), f"{what}: {name} differs"


def is_overlapped(engine) -> bool:
    return getattr(engine, "gradient_overlap", None) is not None


def count_native_reductions(sync) -> list[int]:
    """ZeRO-1/2: the gradients DeepSpeed's own all-reduce still receives (none should be bucketed ones)."""
    received = [0]
    native = sync.native

    def counted(rank, grads, *args, **kwargs):
        received[0] += len(grads)
        return native(rank, grads, *args, **kwargs)

    sync.native = counted
    return received


def check_trainers(overlapped: Trainer, plain: Trainer) -> None:
    assert is_overlapped(overlapped.engine) and not is_overlapped(plain.engine)
    sync = overlapped.engine.gradient_overlap
    assert len(sync.buckets) > 1, "the test model fits one bucket: nothing to overlap"
    received = count_native_reductions(sync) if hasattr(sync, "native") else [0]
    plain.engine.module.load_state_dict(overlapped.engine.module.state_dict())
    for step in range(STEPS):
        a = overlapped.train_step(step + 1, batches(overlapped, step))
        b = plain.train_step(step + 1, batches(plain, step))
        assert sync.launched_in_backward >= 1, "no bucket's all-reduce began during backward"
        assert a["loss"] == b["loss"], (step, a, b)
        assert a["grad_norm"] == b["grad_norm"] or math.isnan(a["grad_norm"]) and math.isnan(b["grad_norm"]), (a, b)
        assert_same_weights(overlapped.engine.module, plain.engine.module, f"step {step + 1}")
    assert received[0] == 0, f"DeepSpeed all-reduced {received[0]} gradients again after the overlapped reduction"
    stage = overlapped.engine.zero_optimization_stage()
    print(f"ZeRO-{stage} launched in backward: {sync.launched_in_backward} of {len(sync.buckets)} buckets", flush=True)


def check_unused_parameter(trainer: Trainer, config: str, stage: int) -> None:
    engines = []
    for overlap in ("true", "false"):
        cfg = load_config(config, [f"train.overlap_grad_reduce={overlap}", "train.grad_bucket_mb=0.25",
                                   f"train.zero_stage={stage}"])
        model = build_model(cfg, trainer.vocab_size, trainer.tokenizer)
        model.unused = torch.nn.Parameter(torch.ones(5))  # in no forward: its gradient stays None
        engine, _ = build_engine(cfg, model, trainer.layout, trainer.rank)
        engines.append(engine)
    overlapped, ref = engines
    assert is_overlapped(overlapped) and not is_overlapped(ref)
    overlapped.module.load_state_dict(ref.module.state_dict())
    for engine in engines:
        for mb in batches(trainer, 0):
            engine.backward(packed_loss_sum(engine, mb, engine.device)[0] / 1000)
            engine.step()
    assert_same_weights(overlapped.module, ref.module, f"ZeRO-{stage} unused parameter")


def trainer_for(config: str, overlap: bool, stage: int) -> Trainer:
    cfg = load_config(config, [f"train.overlap_grad_reduce={str(overlap).lower()}", f"train.zero_stage={stage}"])
    return Trainer(cfg, *resolve_inputs(cfg))


def main(config: str) -> None:
    init_distributed(load_config(config), read_dist_env())
    for stage in STAGES:
        overlapped, plain = trainer_for(config, True, stage), trainer_for(config, False, stage)
        check_trainers(overlapped, plain)
        check_unused_parameter(plain, config, stage)
    print(f"GRAD OVERLAP CHECKS PASSED rank {torch.distributed.get_rank()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
    finish_rank()
