"""`train.micro_batch_sizes: auto`: split each step's batch across unlike ranks by measured throughput.

Each rank times a few forward and backward passes of the real model on real samples at two micro-batch
sizes (no optimizer step, gradients cleared, RNG state restored), fits seconds = a + b x sequences, and
the ranks share one split that levels their predicted micro-step times, within each rank's memory. The
split goes into every checkpoint and is reused on resume while the ranks' hardware stays the same.
Exactness needs nothing here: the loss is normalised by the global token count (train/trainer.py).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from triglot.train.data import BatchLayout, collate

from triglot.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
# Test and benchmark hook: "a0:b0,a1:b1,..." (seconds, seconds per sequence) replaces each rank's measured fit.
# It only chooses the split; training itself is untouched by it.
COSTS_VAR = "TRIGLOT_BALANCE_COSTS"
CALIBRATION_SIZES = (1, 2)
CALIBRATION_REPEATS = 2


@dataclass(frozen=True)
class RankHardware:
    """What one rank runs on, as the split, MFU and the start-up checks need it."""

    rank: int
    product: str  # device name (GPU product, CPU model)
    profile: str  # hardware profile in use
    threads: int  # intra-op threads (CPU ranks share cores by this)
    precision: str
    comm_backend: str
    peak_flops: float  # per device, at the profile's precision
    memory_bytes: float  # device memory from the profile (0: unknown, no cap)

    def fingerprint(self) -> dict:
        """The facts whose change makes a saved split stale."""
        return {"product": self.product, "profile": self.profile, "threads": self.threads}


def local_hardware(cfg: Any, rank: int) -> RankHardware:
    import torch

    from triglot.dist import comm_backend
    from triglot.hardware import detect, peak_flops

    hw = cfg.hardware
    return RankHardware(rank=rank, product=detect().product, profile=str(hw.name), threads=torch.get_num_threads(),
                        precision=str(getattr(hw.precision, "value", hw.precision)),
                        comm_backend=comm_backend(hw), peak_flops=peak_flops(hw),
                        memory_bytes=float(hw.memory_gb) * 2**30)


def gather_objects(value: Any) -> list[Any]:
    """Collective: every rank's `value`, in rank order."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def check_uniform(ranks: list[RankHardware]) -> None:
    """Ranks must agree on precision and communication backend; names the ranks that do not."""
    for key, what in (("precision", "hardware.precision"), ("comm_backend", "hardware.comm_backend")):
        values: dict[str, list[int]] = {}
        for r in ranks:
            values.setdefault(getattr(r, key), []).append(r.rank)
        if len(values) > 1:
            found = "; ".join(f"{v} on rank(s) {', '.join(map(str, rs))} ({ranks[rs[0]].profile})"
                              for v, rs in values.items())
            raise ConfigError(f"ranks disagree on {what}: {found}; one job needs one {key.replace('_', ' ')}: "
                              "set hardware=<profile> (or the differing key) for every rank")


# ---- cost model and split ---------------------------------------------------------------------


@dataclass(frozen=True)
class CostFit:
    """Predicted seconds of one micro-step of `n` sequences: intercept + per_sequence * n."""

    intercept: float
    per_sequence: float

    def seconds(self, n: int) -> float:
        return self.intercept + self.per_sequence * n


def fit_costs(sizes: tuple[int, int], seconds: tuple[float, float]) -> CostFit:
    """The line through two (sequences, seconds) points; slope kept positive (noise can invert it)."""
    (n1, n2), (t1, t2) = sizes, seconds
    slope = max((t2 - t1) / (n2 - n1), 1e-3 * max(t1, t2) / max(n1, n2), 1e-12)
    return CostFit(max(0.0, t1 - slope * n1), slope)


def split_batch(total: int, fits: list[CostFit], caps: list[int]) -> list[int]:
    """Whole sequences per rank summing to `total`, at least 1 each and at most each cap, that minimise the
    slowest rank's predicted time: one at a time, each goes to the rank that would finish it soonest."""
    if total < len(fits):
        raise ConfigError(f"train.micro_batch_sizes=auto needs at least one sequence per rank per micro-step, but "
                          f"a micro-step has {total} for {len(fits)} ranks; raise train.global_batch_size")
    sizes = [1] * len(fits)
    for _ in range(total - len(fits)):
        open_ranks = [r for r in range(len(fits)) if sizes[r] < caps[r]]
        if not open_ranks:
            raise ConfigError(f"a micro-step of {total} sequences does not fit the ranks' memory (at most {caps})")
        best = min(open_ranks, key=lambda r: (fits[r].seconds(sizes[r] + 1), r))
        sizes[best] += 1
    return sizes


def memory_cap(cfg: Any, vocab_size: int, n_params: int) -> int:
    """Sequences per micro-batch that a rank's device memory holds, by a deliberately simple estimate.

    Weights, gradients and Adam state at 16 bytes per parameter, plus per sequence the activations of every
    layer (about 34 x seq_len x hidden bytes at 16 bits, Korthikanti et al. 2022, without the attention
    scores that sdpa does not keep) and the fp32 logits with their gradient. 0 memory means no cap.
    """
    memory = float(cfg.hardware.memory_gb) * 2**30 * 0.9
    if memory <= 0:
        return 1 << 30
    m, seq = cfg.model, int(cfg.train.seq_len)
    width = 2 if str(getattr(cfg.hardware.precision, "value", cfg.hardware.precision)) != "fp32" else 4
    per_sequence = 17 * width * seq * int(m.hidden_size) * int(m.num_layers) + 8 * seq * vocab_size
    return max(1, int((memory - 16 * n_params) // per_sequence))


def accumulation_for(train: Any, hardware: Any, world: int, caps: list[int]) -> int:
    """Accumulation steps: those of the equal split (train.micro_batch_size), more when memory needs it."""
    total = int(train.global_batch_size)
    micro = int(train.micro_batch_size or hardware.micro_batch_size or 1)
    micro = max(1, min(micro, total // world))
    for accumulation in range(max(1, total // (micro * world)), total + 1):
        per_step = total // accumulation
        if total % accumulation == 0 and world <= per_step <= sum(caps):
            return accumulation
    raise ConfigError(f"train.global_batch_size {total} cannot be split into micro-steps of at least one sequence "
                      f"per rank ({world} ranks) within the ranks' memory (at most {caps} sequences); change it")


# ---- calibration -------------------------------------------------------------------------------


class SavedRng:
    """Saves python, numpy, torch and accelerator RNG states on entry and puts them back on exit."""

    def __enter__(self) -> SavedRng:
        import torch

        from triglot.hardware import get_accelerator

        self.accel = get_accelerator()
        self.states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self.device_state = self.accel.get_rng_state() if self.accel.device_name() != "cpu" else None
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        random.setstate(self.states[0])
        np.random.set_state(self.states[1])
        torch.set_rng_state(self.states[2])
        if self.device_state is not None:
            self.accel.set_rng_state(self.device_state)


def time_micro_steps(model: Any, batches: dict[int, dict], device: Any, repeats: int = CALIBRATION_REPEATS
                     ) -> dict[int, float]:
    """Median seconds of forward + backward per batch size, after one warm-up pass each; no step taken,
    gradients cleared and RNG state restored afterwards, so training starts exactly as without it."""
    from triglot.train.model import packed_loss_sum

    from triglot.hardware import synchronize

    out: dict[int, float] = {}
    with SavedRng():
        for n, batch in batches.items():
            times = []
            for i in range(repeats + 1):
                synchronize()
                t0 = time.perf_counter()
                packed_loss_sum(model, batch, device)[0].backward()
                synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
            out[n] = float(np.median(times))
        for p in model.parameters():
            p.grad = None
    return out


def forced_fit(rank: int) -> CostFit | None:
    """The fit given by $TRIGLOT_BALANCE_COSTS for `rank`, if set."""
    text = os.environ.get(COSTS_VAR, "").strip()
    if not text:
        return None
    try:
        a, b = text.split(",")[rank].split(":")
        return CostFit(float(a), float(b))
    except (IndexError, ValueError):
        raise ConfigError(f"{COSTS_VAR}={text!r}: give 'a:b' seconds per rank, comma separated") from None


def calibrate(model: Any, sampler: Any, device: Any, rank: int) -> dict:
    """This rank's measured micro-step times and fit, on the run's first samples."""
    batches = {n: collate([sampler[i] for i in range(n)]) for n in CALIBRATION_SIZES}
    seconds = time_micro_steps(model, batches, device)
    fit = fit_costs(CALIBRATION_SIZES, tuple(seconds[n] for n in CALIBRATION_SIZES))
    fit = forced_fit(rank) or fit
    return {"seconds": {str(n): s for n, s in seconds.items()}, "fit": asdict(fit)}


# ---- the layout of an auto run -----------------------------------------------------------------


def saved_split(root: Any, resume: bool, rank: int) -> dict | None:
    """Collective: the split recorded in the checkpoint a resume would load (rank 0 picks it), if any."""
    import torch.distributed as dist
    from triglot.train import checkpoint as ckpt

    found = [None]
    if rank == 0 and resume:
        latest = ckpt.latest_checkpoint(root)
        found = [ckpt.read_meta(latest[1]).get("batch_split") if latest else None]
    dist.broadcast_object_list(found, src=0)
    return found[0]


def is_auto(train: Any) -> bool:
    return isinstance(train.micro_batch_sizes, str) and train.micro_batch_sizes == AUTO


def rank_hardware(cfg: Any, rank: int) -> list[RankHardware]:
    """Collective, at start: every rank's hardware, after refusing ranks that cannot train together."""
    ranks = gather_objects(local_hardware(cfg, rank))
    check_uniform(ranks)
    if is_auto(cfg.train) and int(cfg.train.zero_stage) == 3:
        raise ConfigError("train.micro_batch_sizes=auto times the unsharded model, which ZeRO-3 never holds: use "
                          "train.zero_stage<=2, or give one size per rank (train.micro_batch_sizes=[...])")
    return ranks


def balanced_layout(cfg: Any, model: Any, sampler: Any, env: Any, ranks: list[RankHardware], root: Any,
                    vocab_size: int) -> tuple[BatchLayout, dict]:
    """Collective: the checkpoint's split when the ranks' hardware is unchanged, else a freshly calibrated one.

    Returns the layout and the record written into every checkpoint's meta.json as `batch_split`.
    """
    from triglot.hardware import device_for

    rank, world = env.rank, len(ranks)
    device = device_for(env.local_rank)
    fingerprints = [r.fingerprint() for r in ranks]
    total = int(cfg.train.global_batch_size)
    saved = saved_split(root, bool(cfg.train.checkpoint.resume), rank)
    if saved and saved.get("hardware") == fingerprints and len(saved.get("micro_sizes", ())) == world \
            and sum(saved["micro_sizes"]) * int(saved["accumulation"]) == total:
        layout = BatchLayout(tuple(int(n) for n in saved["micro_sizes"]), int(saved["accumulation"]))
        log_split(rank, layout, "reused from the checkpoint (same hardware on every rank)")
        return layout, saved
    if saved:
        log_split(rank, None, "in the checkpoint was made for other hardware; calibrating again")
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    caps = [int(c) for c in gather_objects(memory_cap(cfg, vocab_size, n_params))]
    measured = gather_objects(calibrate(model, sampler, device, rank))
    fits = [CostFit(**m["fit"]) for m in measured]
    accumulation = accumulation_for(cfg.train, cfg.hardware, world, caps)
    layout = BatchLayout(tuple(split_batch(total // accumulation, fits, caps)), accumulation)
    log_split(rank, layout, "from calibration: " + "; ".join(
        f"rank {r} {f.intercept * 1e3:.1f} ms + {f.per_sequence * 1e3:.1f} ms/sequence" for r, f in enumerate(fits)))
    record = {"micro_sizes": list(layout.micro_sizes), "accumulation": accumulation, "hardware": fingerprints,
              "calibration": measured, "memory_caps": caps}
    return layout, record


def log_split(rank: int, layout: BatchLayout | None, how: str) -> None:
    if rank != 0:
        return
    if layout is None:
        log.info("batch split %s", how)
    else:
        log.info("batch split (train.micro_batch_sizes=auto): micro-batches %s x %d accumulation steps, %s",
                 list(layout.micro_sizes), layout.accumulation, how)
