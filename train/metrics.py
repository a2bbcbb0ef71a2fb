"""Per-step metrics (loss, lr, grad norm, throughput, MFU, memory, tokens per language), validation
loss per language, and the optional log of consumed global sample indices.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from triglot.train.model import flops_per_token, packed_loss_sum

from triglot.hardware import peak_flops, peak_memory_bytes

log = logging.getLogger(__name__)


class StepMetrics:
    """Turns a step's outputs into one metrics record for the tracker (rank 0 writes it)."""

    def __init__(self, trainer: Any, tracker: Any):
        cfg = trainer.cfg
        self.trainer, self.tracker = trainer, tracker
        self.flops_per_token = flops_per_token(cfg.model, trainer.vocab_size, cfg.train.seq_len)
        # Each rank's own profile's peak (ranks on unlike devices); the job's MFU is all ranks' achieved FLOP/s
        # over their summed peaks, i.e. each rank's MFU weighted by its peak (with equal ranks, the usual figure).
        self.peaks = [r.peak_flops for r in trainer.ranks] or [peak_flops(cfg.hardware)] * trainer.world
        self.peak = sum(self.peaks)
        self.last: dict[str, Any] = {}
        self.total_steps = int(cfg.train.steps)
        self.eta = Eta()

    def local_counts(self, batches: list[dict], data_wait: float) -> list[float]:
        """This rank's input tokens per language, data wait and input tokens (summed over ranks in the step)."""
        tokens = sum(int(mb["input_ids"].numel()) for mb in batches)
        langs = self.trainer.languages
        return [float(sum(mb["languages"].get(lang, 0) for mb in batches)) for lang in langs] + [data_wait, tokens]

    def record(self, step: int, out: dict, seconds: float) -> None:
        t = self.trainer
        counts = out["extra"]
        global_tokens = counts[-1]
        for lang, n in zip(t.languages, counts[:-2], strict=True):
            t.tokens_seen[lang] = t.tokens_seen.get(lang, 0) + int(n)
        record = {
            "loss": out["loss"],
            "lr": out["lr"],
            "grad_norm": out["grad_norm"],
            "tokens_per_s": global_tokens / seconds,
            "step_time_s": seconds,
            "data_wait_s": counts[-2] / t.world,
            "mfu": self.flops_per_token * global_tokens / seconds / self.peak if self.peak else 0.0,
            "memory_gb": peak_memory_bytes() / 2**30,
            "target_tokens": out["global_tokens"],
            "skipped_batches": out["skipped_batches"],
            # Steps whose update was skipped so far (fp16 overflows, steps with every micro-batch dropped).
            "skipped_steps": int(t.engine.skipped_steps),
        }
        if t.overflow_guard.active:
            record["loss_scale"] = t.overflow_guard.scale()
        for r, n in enumerate(out["tokens_per_rank"]):
            record[f"tokens_per_s/rank{r}"] = n / seconds
        record.update(self.per_rank(out, seconds))
        record.update({f"tokens_seen/{lang}": n for lang, n in t.tokens_seen.items()})
        record.update(out.get("metrics", {}))  # a trainer's own figures (DPO rewards, ...)
        self.last = record
        self.tracker.log(record, step=step)
        remaining = self.eta.update(seconds, self.total_steps - step)
        if t.rank == 0 and (step % 10 == 0 or step == 1 or step == self.total_steps):
            log.info("step %d/%d loss %.4f lr %.2e grad_norm %.3f tok/s %.0f eta %s", step, self.total_steps,
                     record["loss"], record["lr"], record["grad_norm"], record["tokens_per_s"],
                     format_duration(remaining))

    def per_rank(self, out: dict, seconds: float) -> dict:
        """Each rank's micro-batch, its own forward/backward time, and its MFU against its own peak."""
        t, record = self.trainer, {}
        busy = out.get("rank_seconds") or [seconds] * t.world
        total = sum(t.layout.micro_sizes)
        by_work = 0.0
        for r, (n, own) in enumerate(zip(t.layout.micro_sizes, busy, strict=True)):
            record[f"micro_batch/rank{r}"] = n
            record[f"step_time_s/rank{r}"] = own
            tokens = n * t.layout.accumulation * int(t.cfg.train.seq_len)
            mfu = self.flops_per_token * tokens / seconds / self.peaks[r] if self.peaks[r] else 0.0
            record[f"mfu/rank{r}"] = mfu
            by_work += mfu * n / total if total else 0.0
        # The job's MFU with each rank's MFU weighted by its share of the work (sequences of the step).
        record["mfu/job_by_work"] = by_work
        return record

    def summary(self, step: int) -> dict:
        out = {"steps": step, **{k: v for k, v in self.last.items() if not k.startswith("tokens_per_s/")}}
        self.tracker.summary(out)
        return out


def validate(trainer: Any) -> dict:
    """Mean loss per language on the held-out windows (all ranks take part)."""
    import torch
    from triglot.train.data import validation_batches

    t = trainer
    micro = max(t.layout.micro_sizes)
    sums: dict[str, list[float]] = {}
    t.engine.eval()
    with torch.no_grad():
        for lang, batch in validation_batches(t.val_packed, t.val_docs, t.cfg.train.seq_len, micro,
                                              t.cfg.train.val_batches, t.rank, t.world):
            loss, n = packed_loss_sum(t.engine, batch, t.device)
            acc = sums.setdefault(lang, [0.0, 0.0])
            acc[0] += float(loss.item()) if n else 0.0
            acc[1] += n
    t.engine.train()
    names = sorted(sums)
    totals = t._all_reduce([v for name in names for v in sums[name]])
    out = {}
    for i, name in enumerate(names):
        loss_sum, n = totals[2 * i], totals[2 * i + 1]
        if n:
            out[f"val_loss/{name}"] = loss_sum / n
    if out:
        all_sum, all_n = sum(totals[0::2]), sum(totals[1::2])
        out["val_loss"] = all_sum / all_n
        if t.rank == 0:
            per_lang = ", ".join(f"{k.split('/', 1)[1]} {v:.4f}" for k, v in out.items() if k.startswith("val_loss/"))
            log.info("validation loss %.4f (%s)", out["val_loss"], per_lang)
    return out


class Eta:
    """Time left from a moving average of step times (the first steps, with warm-up, weigh less)."""

    def __init__(self, smoothing: float = 0.1):
        self.smoothing, self.mean = smoothing, None

    def update(self, seconds: float, steps_left: int) -> float:
        self.mean = seconds if self.mean is None else (1 - self.smoothing) * self.mean + self.smoothing * seconds
        return self.mean * max(0, steps_left)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class SampleLog:
    """`samples/rank*.jsonl`: the global sample indices each rank consumed at each step.

    On resume from step S, rank 0 first drops records after S (those steps are redone).
    """

    def __init__(self, folder: Path, rank: int, resume_step: int):
        import torch.distributed as dist

        folder.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            for path in folder.glob("rank*.jsonl"):
                kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                        if line and json.loads(line)["step"] <= resume_step]
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
                os.replace(tmp, path)
        dist.barrier()
        self.file = open(folder / f"rank{rank:05d}.jsonl", "a", encoding="utf-8")

    def write(self, step: int, indices: list[list[int]]) -> None:
        self.file.write(json.dumps({"step": step, "indices": [i for group in indices for i in group]}) + "\n")
        self.file.flush()
