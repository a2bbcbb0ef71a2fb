"""DeepSpeed setup: the config generated from the run config and hardware profile, and the engine.

The only module that calls deepspeed.init_distributed and deepspeed.initialize.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from triglot.train.collectives import route_gloo_all_gather
from triglot.train.data import BatchLayout
from triglot.train.grad_reduce import overlap_gradient_reduction

from triglot.config import to_container
from triglot.dist import DistEnv
from triglot.errors import ConfigError, number_hint


def batch_layout(train: Any, hardware: Any, world: int) -> BatchLayout:
    """Per-rank micro-batch sizes and accumulation steps that make up train.global_batch_size."""
    if isinstance(train.micro_batch_sizes, str):  # auto: measured by train.balance in `triglot train` only
        raise ConfigError("train.micro_batch_sizes=auto is worked out by pretraining (`triglot train`) only; "
                          "give one size per rank here, e.g. train.micro_batch_sizes=[3,5]")
    if train.micro_batch_sizes:
        sizes = [int(s) for s in train.micro_batch_sizes]
        if len(sizes) != world:
            raise ConfigError(f"train.micro_batch_sizes has {len(sizes)} entries but there are {world} ranks; "
                              "give one size per rank")
    else:
        micro = int(train.micro_batch_size or hardware.micro_batch_size or 1)
        micro = max(1, min(micro, train.global_batch_size // world))
        sizes = [micro] * world
    per_step = sum(sizes)
    if min(sizes) < 1 or train.global_batch_size % per_step:
        raise ConfigError(f"train.global_batch_size {train.global_batch_size} is not a multiple of the "
                          f"micro-batches across ranks ({sizes}, sum {per_step}); change either")
    return BatchLayout(tuple(sizes), train.global_batch_size // per_step)


def lr_lambda(train: Any):
    """Multiplier of train.lr at each step: warmup, then cosine, linear, warmup-stable-decay or constant."""
    steps, warmup, floor = int(train.steps), int(train.warmup_steps), float(train.min_lr_ratio)
    kind = train.schedule.value
    decay_start = steps - int(round(train.decay_fraction * steps)) if kind == "wsd" else warmup

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, steps - decay_start))
        if kind == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return floor + (1 - floor) * (1 - progress)

    return factor


def deepspeed_config(cfg: Any, layout: BatchLayout, rank: int) -> dict:
    """The DeepSpeed config for this rank, with cfg.train.deepspeed merged over it."""
    train, hw = cfg.train, cfg.hardware
    if train.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"train.zero_stage must be 0..3, got {train.zero_stage}")
    if train.offload_params and train.zero_stage != 3:
        raise ConfigError("train.offload_params needs train.zero_stage=3")
    # Contiguous gradient buffers fight fragmentation of device memory; on CPU they are only extra
    # copies (about 10% of a tiny-model step here).
    zero: dict[str, Any] = {"stage": train.zero_stage, "contiguous_gradients": hw.accelerator != "cpu",
                            "overlap_comm": False}
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": hw.accelerator != "cpu"}
    if train.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": hw.accelerator != "cpu"}
    if train.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    precision = hw.precision.value
    config: dict[str, Any] = {
        # Each rank states its own micro-batch; the global batch is checked in batch_layout.
        "train_micro_batch_size_per_gpu": layout.micro_sizes[rank],
        "gradient_accumulation_steps": layout.accumulation,
        "gradient_clipping": train.optimizer.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
        "fp16": {"enabled": precision == "fp16", "loss_scale": hw.loss_scale,
                 "initial_scale_power": hw.initial_scale_power},
        "bf16": {"enabled": precision == "bf16"},
    }
    if train.offload_optimizer:
        opt = train.optimizer
        config["optimizer"] = {"type": "AdamW", "params": {"lr": train.lr, "betas": list(opt.betas), "eps": opt.eps,
                                                           "weight_decay": opt.weight_decay}}
    return _merge(config, to_container(train.deepspeed))  # checked when the config loads (check_deepspeed)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def init_distributed(cfg: Any, env: DistEnv) -> None:
    import os

    import deepspeed

    from triglot.dist import comm_backend, world_of_one_env
    from triglot.hardware import tune_host_allocator

    if cfg.hardware.accelerator == "cpu":
        tune_host_allocator()  # activations live in host memory: keep their pages between steps
    # Started without torchrun: a world of one, with its own rendezvous, instead of DeepSpeed's MPI discovery.
    os.environ.update(world_of_one_env())
    timeout = datetime.timedelta(seconds=int(cfg.train.dist_timeout_s))
    deepspeed.init_distributed(dist_backend=comm_backend(cfg.hardware), timeout=timeout,
                               dist_init_required=True, verbose=False)
    route_gloo_all_gather()  # ZeRO's weight all-gather on gloo as broadcasts: the same bytes, fewer copies


def param_groups(model: Any, weight_decay: float) -> list[dict]:
    """Decay matrices; not norms, biases or other 1-D parameters."""
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_engine(cfg: Any, model: Any, layout: BatchLayout, rank: int) -> tuple[Any, dict]:
    """deepspeed.initialize with AdamW and the configured schedule; returns (engine, ds_config)."""
    import deepspeed
    import torch

    ds_config = deepspeed_config(cfg, layout, rank)
    opt = cfg.train.optimizer
    groups = param_groups(model, opt.weight_decay)
    optimizer = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(opt.betas), eps=opt.eps)

    def scheduler(optim: Any) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda(cfg.train))

    from pydantic import ValidationError

    try:
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                               model_parameters=groups if optimizer is None else None,
                                               lr_scheduler=scheduler, config=ds_config)
    except ValidationError as err:  # DeepSpeed's config models refused a value: one from train.deepspeed
        raise ConfigError(deepspeed_value_error(to_container(cfg.train.deepspeed), err)) from None
    overlap_gradient_reduction(cfg, engine)  # ZeRO-0: the all-reduce runs during backward (train.overlap_grad_reduce)
    _keep_fp32_clip_norm(engine)
    return engine, ds_config


def deepspeed_value_error(overrides: dict, err: Any) -> str:
    """One line for a DeepSpeed config validation error, naming the train.deepspeed key it came from."""
    first = err.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]

    def paths(tree: dict, prefix: tuple[str, ...] = ()):
        for key, value in tree.items():
            yield (*prefix, str(key))
            if isinstance(value, dict):
                yield from paths(value, (*prefix, str(key)))

    # DeepSpeed's error names the key inside its own section (reduce_bucket_size): find where the user wrote it.
    path = next((p for p in paths(overrides) if loc and list(p[-len(loc):]) == loc), loc)
    value = first.get("input")
    return (f"train.deepspeed.{'.'.join(path)}: DeepSpeed refuses {value!r} ({first.get('msg', err.title)})"
            f"{number_hint(value)}")


def _keep_fp32_clip_norm(engine: Any) -> None:
    """fp32 ZeRO-0 clips with a norm DeepSpeed then drops; keep it for get_global_grad_norm (the logged grad_norm)."""
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip_and_keep() -> None:
        engine._global_grad_norm = clip_grad_norm_(parameters=engine.module.parameters(),
                                                   max_norm=engine.gradient_clipping(), mpu=engine.mpu)

    engine.clip_fp32_gradients = clip_and_keep
