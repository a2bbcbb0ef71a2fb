"""ZeRO-0 gradient all-reduce overlapped with backward, bucket by bucket, as PyTorch DDP does it.

DeepSpeed's ZeRO-0 reduces every gradient after backward has finished, so the network (or gloo's
memory copies on CPU) and the compute take turns. Here each parameter's post-accumulate-grad hook
counts down its bucket during the backward of the last micro-batch of a step; a full bucket is
flattened and its all-reduce launched asynchronously while backward goes on with the earlier
layers. DeepSpeed's own reduction point (`engine.allreduce_gradients`, called after every
backward) becomes the place that waits for the buckets and writes the averages back, so every
caller of `engine.backward` / `engine.step` gets the overlap without changes, and clipping,
overflow checks and the optimizer see exactly the gradients DeepSpeed's reduction would give.
"""

from __future__ import annotations

from typing import Any


class OverlappedAllReduce:
    """Gradient buckets of one DeepSpeed ZeRO-0 engine, all-reduced while backward runs.

    Buckets are launched strictly in order (bucket i only after buckets 0..i-1), so every rank
    issues the same collectives in the same order whatever order its hooks fire in. Parameters
    that got no gradient in the step (unused in the forward) are reduced as zeros at the end, as
    DeepSpeed does.
    """

    def __init__(self, engine: Any, bucket_bytes: int):
        import torch.distributed as dist

        self.engine = engine
        self.world = dist.get_world_size()
        params = [p for p in engine.module.parameters() if p.requires_grad and p.numel()]
        # Backward reaches parameters roughly in the reverse of the order the model created them.
        self.buckets: list[list[Any]] = []
        size = 0
        for p in reversed(params):
            nbytes = p.numel() * p.element_size()
            current = self.buckets[-1] if self.buckets else None
            if current is None or size + nbytes > bucket_bytes or p.dtype != current[0].dtype:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(p)
            size += nbytes
        self.bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        for p in params:
            p.register_post_accumulate_grad_hook(self._ready)
        self.launched_in_backward = 0  # buckets whose all-reduce began before backward returned (last step)
        self._reset()
        engine.allreduce_gradients = self.finish  # DeepSpeed's reduction point, after every backward

    def _reset(self) -> None:
        self.missing = [len(bucket) for bucket in self.buckets]
        self.next = 0
        self.in_flight: list[tuple[int, Any, Any, float]] = []  # bucket, flat buffer, work, scale after

    def _reducing(self) -> bool:
        engine = self.engine
        return engine.is_gradient_accumulation_boundary() and not engine.inside_no_sync_ctxt

    def _ready(self, param: Any) -> None:
        if not self._reducing():
            return  # an accumulation micro-step: gradients stay local
        self.missing[self.bucket_of[id(param)]] -= 1
        while self.next < len(self.buckets) and self.missing[self.next] == 0:
            self._launch(self.next)

    def _launch(self, index: int) -> None:
        import torch
        import torch.distributed as dist

        bucket = self.buckets[index]
        for p in bucket:
            if p.grad is None:  # unused in this step's forward on this rank: its share is zero
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        dtype = self.engine.communication_data_type
        if flat.dtype != dtype:
            flat = flat.to(dtype)
        pre, post = self._scales()
        if pre != 1.0:
            flat.mul_(pre)
        work = dist.all_reduce(flat, async_op=True)
        self.in_flight.append((index, flat, work, post))
        self.next = index + 1

    def _scales(self) -> tuple[float, float]:
        """Factors before and after the sum: DeepSpeed's gradient averaging (engine.allreduce_bucket)."""
        engine = self.engine
        if not engine.gradient_average:
            return 1.0, 1.0
        if engine.postscale_gradients():
            factor = engine.gradient_predivide_factor()
            return 1.0 / factor, (factor / self.world if factor != self.world else 1.0)
        return 1.0 / self.world, 1.0

    def finish(self, bucket_size: int = 0) -> None:
        """Launch what is left, wait for every bucket and write the averages into the gradients."""
        if not self._reducing():
            return
        self.launched_in_backward = len(self.in_flight)
        while self.next < len(self.buckets):
            self._launch(self.next)
        for index, flat, work, post in self.in_flight:
            work.wait()
            if post != 1.0:
                flat.mul_(post)
            offset = 0
            for p in self.buckets[index]:
                n = p.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
                offset += n
        self._reset()


def overlap_gradient_reduction(cfg: Any, engine: Any) -> OverlappedAllReduce | None:
    """Install the overlapped all-reduce on a ZeRO-0 engine with more than one rank (train.overlap_grad_reduce)."""
    import torch.distributed as dist

    train = cfg.train
    if not train.overlap_grad_reduce or engine.zero_optimization_stage() != 0 or dist.get_world_size() < 2:
        return None
    if engine.has_moe_layers or engine.pipeline_parallelism or getattr(engine, "sequence_parallel_size", 1) != 1:
        return None  # their gradients reduce over other groups: DeepSpeed's own path
    return OverlappedAllReduce(engine, int(float(train.grad_bucket_mb) * 2**20))
