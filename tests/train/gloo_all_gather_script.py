"""Run under torchrun by test_gloo_all_gather: the broadcast all-gather (train/collectives.py) against gloo's own.

First the collective alone: odd sizes, bf16, a 2-D output, a process group other than the world, sync
and async, each equal to torch's all_gather_into_tensor. Then ZeRO-2 and ZeRO-3 trainers, built after
triglot's init_distributed, must have gathered their weights through it, and two steps with it must
leave every weight bit-identical to two steps from the same weights with DeepSpeed's native all-gather.
"""

from __future__ import annotations

import sys

import deepspeed.comm.comm as ds_comm
import torch
import torch.distributed as dist
from triglot.train import collectives
from triglot.train.data import collate
from triglot.train.engine import init_distributed
from triglot.train.trainer import Trainer, resolve_inputs

from triglot.config import load_config
from triglot.dist import finish_rank, read_dist_env


def check_collective() -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    other = dist.new_group(list(range(world)))
    for numel, dtype, group in ((1, torch.float32, None), (1001, torch.float32, None), (37, torch.bfloat16, None),
                                (4096, torch.float32, other)):
        shard = (torch.arange(numel, dtype=torch.float32) * (rank + 1) + rank).to(dtype)
        expect = torch.empty(world * numel, dtype=dtype)
        dist.all_gather_into_tensor(expect, shard, group=group)
        for async_op in (False, True):
            out = torch.full((world, numel), -1.0, dtype=dtype)  # 2-D, as ZeRO-3 hands over some buffers
            handle = collectives.broadcast_all_gather(out, shard, group=group, async_op=async_op)
            if async_op:
                handle.wait()
                assert handle.is_completed()
            assert torch.equal(out.view(-1), expect), (numel, dtype, async_op)
    # The shard as a view into its own slice of the output, as ZeRO-1/2 pass their flat weights.
    flat = torch.zeros(world * 8)
    flat.view(world, 8)[rank] = rank + 1.0
    collectives.broadcast_all_gather(flat, flat.view(world, 8)[rank])
    assert torch.equal(flat, torch.arange(1, world + 1, dtype=torch.float32).repeat_interleave(8))


def steps(trainer: Trainer, n: int) -> None:
    for step in range(n):
        batch = [collate([trainer.sampler[i] for i in g]) for g in trainer.layout.indices(step, trainer.rank)]
        trainer.train_step(step + 1, batch)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    engine = trainer.engine
    if engine.zero_optimization_stage() == 3:
        from deepspeed.runtime.zero.partition_parameters import GatheredParameters

        with GatheredParameters(list(engine.module.parameters())):
            return {k: v.detach().clone() for k, v in engine.module.named_parameters()}
    return {k: v.detach().clone() for k, v in engine.module.named_parameters()}


def check_training(config: str, stage: int) -> None:
    cfg = load_config(config, [f"train.zero_stage={stage}"])
    routed = ds_comm.cdb.all_gather_into_tensor
    assert getattr(routed, "_triglot_broadcast", False), "init_distributed left gloo's all-gather in place"
    calls = []
    real = collectives.broadcast_all_gather
    collectives.broadcast_all_gather = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        ours = Trainer(cfg, *resolve_inputs(cfg))
        start = weights(ours)
        steps(ours, 2)
    finally:
        collectives.broadcast_all_gather = real
    assert calls, f"ZeRO-{stage} gathered no weights through the broadcast all-gather"
    ds_comm.cdb.all_gather_into_tensor = routed.native
    try:
        native = Trainer(cfg, *resolve_inputs(cfg))
        assert all(torch.equal(start[k], v) for k, v in weights(native).items()), "the two starts differ"
        steps(native, 2)
    finally:
        ds_comm.cdb.all_gather_into_tensor = routed
    theirs = weights(native)
    for name, value in weights(ours).items():
        assert torch.equal(value, theirs[name]), f"ZeRO-{stage}: {name} differs from the native all-gather's"
    print(f"ZeRO-{stage}: {len(calls)} broadcast all-gathers, weights identical", flush=True)


def main(config: str) -> None:
    init_distributed(load_config(config), read_dist_env())
    check_collective()
    for stage in (2, 3):
        check_training(config, stage)
    print(f"GLOO ALL-GATHER CHECKS PASSED rank {dist.get_rank()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
    finish_rank()
