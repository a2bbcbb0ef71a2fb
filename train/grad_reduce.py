"""Gradient all-reduce overlapped with backward, bucket by bucket, as PyTorch DDP does it.

DeepSpeed reduces every gradient after backward has finished (ZeRO-0 always; ZeRO-1/2 without
contiguous_gradients, once a model's gradients fit one reduce bucket, as they do below 5e8
parameters), so the network (or gloo's memory copies on CPU) and the compute take turns. Here each
parameter's post-accumulate-grad hook counts down its bucket during backward; a full bucket is
flattened and its all-reduce launched asynchronously while backward goes on with the earlier
layers. DeepSpeed's own reduction point becomes the place that waits for the buckets and writes
the averages back: `engine.allreduce_gradients` under ZeRO-0, the ZeRO-1/2 optimizer's
`buffered_reduce_fallback` (its all-reduce of the gradients in its bucket) otherwise. Every caller
of `engine.backward` / `engine.step` gets the overlap without changes, and clipping, overflow
checks, the ZeRO partitioning and the optimizer see exactly the gradients DeepSpeed's reduction
would give.
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
        self._install()

    def _install(self) -> None:
        self.engine.allreduce_gradients = self.finish  # DeepSpeed's reduction point, after every backward

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

    def _comm_dtype(self) -> Any:
        return self.engine.communication_data_type

    def _prescale(self, flat: Any) -> float:
        """Scale the bucket before the sum; returns the factor for after it."""
        pre, post = self._scales()
        if pre != 1.0:
            flat.mul_(pre)
        return post

    def _launch(self, index: int) -> None:
        import torch
        import torch.distributed as dist

        bucket = self.buckets[index]
        for p in bucket:
            if p.grad is None:  # unused in this step's forward on this rank: its share is zero
                p.grad = torch.zeros_like(p)
        dtype, first = self._comm_dtype(), bucket[0].grad
        if len(bucket) == 1 and first.dtype == dtype and first.is_contiguous():
            flat = first.view(-1)  # a bucket of one gradient is reduced where it lies: nothing to copy back
        else:
            flat = torch.cat([p.grad.reshape(-1) for p in bucket])
            if flat.dtype != dtype:
                flat = flat.to(dtype)
        post = self._prescale(flat)
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
                part = flat[offset:offset + n].view_as(p.grad)
                if part.data_ptr() == p.grad.data_ptr():
                    pass  # reduced in place
                elif part.dtype == p.grad.dtype:
                    p.grad = part  # the reduced bucket holds the gradient from here on: no copy back
                else:
                    p.grad.copy_(part)
                offset += n
        self._reset()


class OverlappedPartitionAllReduce(OverlappedAllReduce):
    """The same buckets for a ZeRO-1/2 engine whose optimizer all-reduces its gradients in one bucket.

    That optimizer (contiguous_gradients off) collects every gradient in its reduce bucket and, at its
    epilogue, all-reduces them through `buffered_reduce_fallback`, then keeps its own partition and
    drops the rest. Here the all-reduce has already run bucket by bucket during backward; the epilogue
    only waits for it, and the partitioning that follows is DeepSpeed's own. ZeRO-2 reduces after every
    micro-batch, ZeRO-1 only at the step's last one, as DeepSpeed does.
    """

    def __init__(self, engine: Any, bucket_bytes: int):
        self.optimizer = engine.optimizer
        self.every_micro_batch = bool(self.optimizer.partition_gradients)
        self.pending = False  # a hook fired since the last epilogue: buckets are launched or filling
        self.written: set[int] = set()  # ids of the gradients the last epilogue wrote
        super().__init__(engine, bucket_bytes)

    def _install(self) -> None:
        self.native = self.optimizer.buffered_reduce_fallback
        self.optimizer.buffered_reduce_fallback = self._reduce_fallback

    def _reducing(self) -> bool:
        return self.every_micro_batch or super()._reducing()

    def _ready(self, param: Any) -> None:
        if self._reducing():
            self.pending = True
        super()._ready(param)

    def _comm_dtype(self) -> Any:
        return self.optimizer.communication_data_type

    def _prescale(self, flat: Any) -> float:
        if self.optimizer.gradient_average:  # as the optimizer's allreduce_bucket: divide, then sum
            flat.div_(self.world)
        return 1.0

    def _reduce_fallback(self, rank: Any, grads: list, *args: Any, **kwargs: Any) -> None:
        if rank is None and self.pending:
            # The gradients DeepSpeed collected; finish() may hand their parameters views of the reduced buckets.
            self.written = {id(p.grad) for bucket in self.buckets for p in bucket if p.grad is not None}
            self.finish()
            self.pending = False
        rest = [g for g in grads if id(g) not in self.written] if rank is None else grads
        if rest:  # not one of this engine's bucketed gradients: DeepSpeed reduces it itself
            self.native(rank, rest, *args, **kwargs)


def overlap_gradient_reduction(cfg: Any, engine: Any) -> OverlappedAllReduce | None:
    """Install the overlapped all-reduce on an engine with more than one rank (train.overlap_grad_reduce).

    ZeRO-0 always; ZeRO-1/2 where DeepSpeed would all-reduce every gradient after backward in one
    bucket: contiguous_gradients, overlap_comm and optimizer offload off (they have reduction paths of
    their own), gradients in the parameters' own dtype, and all of them within reduce_bucket_size
    (a larger model's gradients are reduced and dropped bucket by bucket during backward already).
    """
    import torch.distributed as dist

    train = cfg.train
    stage = engine.zero_optimization_stage()
    if not train.overlap_grad_reduce or stage > 2 or dist.get_world_size() < 2:
        return None
    if engine.has_moe_layers or engine.pipeline_parallelism or getattr(engine, "sequence_parallel_size", 1) != 1:
        return None  # their gradients reduce over other groups: DeepSpeed's own path
    bucket_bytes = int(float(train.grad_bucket_mb) * 2**20)
    if stage == 0:
        if hasattr(engine.optimizer, "get_grads_for_reduction"):
            return None  # an optimizer that reduces its own high-precision copies (BF16_Optimizer)
        sync = OverlappedAllReduce(engine, bucket_bytes)
    elif one_bucket_all_reduce(engine.optimizer):
        sync = OverlappedPartitionAllReduce(engine, bucket_bytes)
    else:
        return None
    engine.gradient_overlap = sync  # for callers that report it (how many buckets began during backward)
    return sync


def one_bucket_all_reduce(optimizer: Any) -> bool:
    """Whether a ZeRO-1/2 optimizer all-reduces every gradient at its epilogue through buffered_reduce_fallback."""
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    if not isinstance(optimizer, DeepSpeedZeroOptimizer):
        return False  # e.g. ZeRO-1 with bf16 weights and fp32 accumulation: DeepSpeed's BF16_Optimizer
    if optimizer.contiguous_gradients or optimizer.overlap_comm or optimizer.cpu_offload:
        return False
    if getattr(optimizer, "zenflow", False) or getattr(optimizer, "use_grad_accum_attribute", False):
        return False
    if optimizer.gradient_accumulation_dtype != optimizer.dtype:
        return False  # fp32 accumulation of 16-bit gradients: DeepSpeed's compact partition buffers
    params = [p for group in optimizer.bit16_groups for p in group if p.requires_grad]
    return sum(p.numel() for p in params) <= optimizer.reduce_bucket_size
