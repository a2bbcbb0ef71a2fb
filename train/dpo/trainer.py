"""The DPO trainer: the SFT trainer fed with packed preference pairs, its step a preference loss over pairs.

One step: agree on the global number of pairs, run the micro-batches with the summed per-pair losses divided
by that number, then let DeepSpeed reduce and step; rewards and accuracy ride on the one all-reduce after it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from triglot.train.coordination import StopRequest
from triglot.train.dpo.data import build_dpo_sampler, dpo_input_files
from triglot.train.dpo.loss import REFERENCE_FREE, check_dpo_section, preference_loss, sequence_logps
from triglot.train.dpo.reference import adapters_disabled, load_or_compute
from triglot.train.sft.stage import SftTrainer

from triglot.config import to_container
from triglot.errors import ConfigError
from triglot.manifest import StageManifest

log = logging.getLogger(__name__)


class DpoTrainer(SftTrainer):
    """Preference tuning from model.pretrained; the model may carry LoRA adapters (then the base is the reference)."""

    section = "dpo"

    def __init__(self, cfg: Any, model_dir: Path, tokenizer_dir: Path):  # preference pairs and a reference model
        check_dpo_section(cfg.dpo, bool(cfg.dpo.lora.enabled))
        if cfg.train.on_nonfinite.value == "skip":
            raise ConfigError("train.on_nonfinite=skip is not supported by dpo; use train.on_nonfinite=stop")
        self._start(cfg, tokenizer_dir)
        self.bad_records = {d.name: dict(d.bad) for d in self.sampler.datasets}
        self.live_reference = cfg.dpo.reference == "live" or cfg.dpo.loss in REFERENCE_FREE
        if not self.live_reference:
            load_or_compute(self, model_dir)  # before resume(): the weights are still the starting model's
        self.stop = StopRequest().install()

    def _sampler(self) -> Any:
        return build_dpo_sampler(self.cfg, self.tokenizer)

    def pair_losses(self, mb: dict) -> tuple[Any, Any, Any]:
        """(loss, chosen reward, rejected reward) of every pair in the micro-batch."""
        import torch

        reference = mb["reference"]
        if self.live_reference and self.cfg.dpo.loss not in REFERENCE_FREE:
            with torch.no_grad(), adapters_disabled(self.engine.module):
                reference = sequence_logps(self.engine, mb, self.device)[0].view(-1, 2)
        logps, counts = sequence_logps(self.engine, mb, self.device)
        return preference_loss(self.cfg.dpo, logps, counts, reference)

    def train_step(self, step: int, micro_batches: list[dict], extra: list[float] = ()) -> dict:
        """Gradients equal d(sum of pair losses)/d(theta) / P_global, P_global the pairs of the step on all ranks."""
        local = [float(sum(mb["pairs"] for mb in micro_batches)),
                 float(sum(int((mb["labels"] != -100).sum()) for mb in micro_batches))]
        agreed = self._all_reduce([v if r == self.rank else 0.0 for r in range(self.world) for v in local]
                                  + [float(self.stop.requested)])
        pairs_per_rank, tokens_per_rank = agreed[0:-1:2], agreed[1:-1:2]
        global_pairs = max(1.0, sum(pairs_per_rank))
        scale = self.world / global_pairs  # DeepSpeed averages over ranks; world undoes it (see Trainer.train_step)
        scale_before = self.overflow_guard.scale()
        stats = [0.0] * 5  # loss, chosen reward, rejected reward, correctly ordered pairs, non-finite micro-batches
        for mb in micro_batches:
            loss, chosen, rejected = self.pair_losses(mb)
            total = loss.sum()
            finite = bool(total.isfinite())
            stats[0] += float(total.item()) if finite else 0.0
            stats[1] += float(chosen.sum())
            stats[2] += float(rejected.sum())
            stats[3] += float((chosen > rejected).sum())
            stats[4] += 0.0 if finite else 1.0
            self.engine.backward(total * scale, scale_wrt_gas=False)
            self.engine.step()
        reduced = self._all_reduce([*stats, *extra])
        norm = self._check_step(step, reduced[4] > 0, scale_before, True)
        n = global_pairs
        metrics = {"pairs": n, "rewards/chosen": reduced[1] / n, "rewards/rejected": reduced[2] / n,
                   "rewards/margin": (reduced[1] - reduced[2]) / n, "rewards/accuracy": reduced[3] / n}
        return {"loss": reduced[0] / n, "tokens_per_rank": tokens_per_rank, "global_tokens": sum(tokens_per_rank),
                "stop": agreed[-1] > 0, "skipped_batches": 0, "step_applied": self.engine.was_step_applied(),
                "grad_norm": norm, "extra": reduced[5:], "metrics": metrics}

    def manifest_extra(self) -> dict:
        return {"bad_records": self.bad_records}

    def lineage(self) -> dict:
        start = Path(self.cfg.model.pretrained)
        return {"pretrained": str(start), "pretrained_manifest": StageManifest.load(start.parent) or {},
                "tokenizer_dir": str(self.tokenizer_dir), "dpo_datasets": to_container(self.cfg.dpo.datasets),
                "dpo_files": dpo_input_files(self.cfg), "bad_records": self.bad_records}
