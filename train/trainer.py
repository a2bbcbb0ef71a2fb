"""The training stage: `run_train_stage(cfg)` runs inside every rank and owns the loop.

One step: agree on the global target-token count (and on stop requests), run the micro-batches with
the loss divided by that count, then let DeepSpeed reduce and step. Side concerns are small calls.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from triglot.train import balance
from triglot.train import checkpoint as ckpt
from triglot.train.coordination import (
    NonFiniteLoss,
    OverflowGuard,
    Preempted,
    StopRequest,
    is_oom,
    oom_message,
    preflight,
)
from triglot.train.data import MixtureSampler, Prefetcher, split_documents
from triglot.train.engine import batch_layout, build_engine, deepspeed_config, init_distributed
from triglot.train.export import export_hf, parameter_count, shard_bytes
from triglot.train.metrics import SampleLog, StepMetrics, validate
from triglot.train.model import build_model, load_tokenizer, packed_loss_sum
from triglot.train.run_state import PREEMPTED, training_marker

from triglot.config import to_container, to_yaml
from triglot.dist import read_dist_env
from triglot.errors import ConfigError, InputError
from triglot.manifest import StageManifest
from triglot.packed import PackedDataset
from triglot.paths import run_dir, stage_dir

log = logging.getLogger(__name__)


def resolve_inputs(cfg: Any) -> tuple[Path, Path | None]:
    """Packed data folder and tokenizer folder (None when there is none, e.g. synthetic test data)."""
    data = stage_dir(cfg, "pack", cfg.train.data_dir or cfg.pack.output_dir)
    if not (data / "meta.json").is_file():
        raise InputError(f"packed data not found at {data} (no meta.json): run `triglot data pack` or set "
                         "train.data_dir")
    candidates = [cfg.model.tokenizer, PackedDataset(data).meta.get("tokenizer", ""), cfg.pack.tokenizer_dir,
                  str(stage_dir(cfg, "tokenizer", cfg.tokenizer.output_dir))]
    for cand in candidates:
        if cand and (Path(cand) / "tokenizer_config.json").is_file():
            return data, Path(cand)
    if cfg.model.tokenizer:
        raise InputError(f"model.tokenizer: {cfg.model.tokenizer} has no tokenizer_config.json")
    return data, None


def vocab_size_for(cfg: Any, packed: PackedDataset, tokenizer: Any) -> int:
    size = int(cfg.model.vocab_size) or (len(tokenizer) if tokenizer is not None else packed.vocab_size)
    if tokenizer is not None:
        size = max(size, len(tokenizer))  # a longer tokenizer grows the embeddings
    if size < packed.vocab_size:
        raise ConfigError(f"model.vocab_size {size} is smaller than the packed data's vocabulary "
                          f"({packed.vocab_size}); set model.vocab_size=0 to take it from the data")
    return size


def stage_config(cfg: Any) -> Any:
    """What decides the training result: the manifest's config (tracking, launch etc. left out)."""
    return OmegaConf.create({k: to_container(cfg[k]) for k in ("model", "train", "hardware")}
                            | {"seed": int(cfg.run.seed)})


class Trainer:
    """State of one rank's training run; `fit()` runs the loop from the newest checkpoint to the end."""

    # Set by __init__; a subclass with its own __init__ keeps these (no auto split, MFU from cfg.hardware).
    ranks: list = []
    batch_split: dict = {}

    def __init__(self, cfg: Any, data_dir: Path, tokenizer_dir: Path | None):
        import torch.distributed as dist

        self.cfg, self.env = cfg, read_dist_env()
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
        self.data_dir, self.tokenizer_dir = data_dir, tokenizer_dir
        self.packed = PackedDataset(data_dir)
        if not len(self.packed):
            raise InputError(f"train.data_dir: {data_dir} holds no documents; pack some text first "
                             "(`triglot data pack`)")
        if cfg.train.checkpoint.export_hf:
            shard_bytes(cfg.train.export.max_shard_size)  # refused now, on every rank, not after training
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.vocab_size = vocab_size_for(cfg, self.packed, self.tokenizer)
        seed = int(cfg.run.seed)
        train_docs, self.val_docs = split_documents(self.packed, cfg.train.val_fraction, seed)
        self.val_packed = self.packed
        if cfg.train.val_dir:
            self.val_packed = PackedDataset(cfg.train.val_dir, key="train.val_dir")
            self.val_docs = list(range(len(self.val_packed)))
        self.sampler = MixtureSampler(self.packed, train_docs, cfg.train.seq_len, seed, dict(cfg.train.mixture),
                                      cfg.train.mixture_by)
        self.ranks = balance.rank_hardware(cfg, self.rank)  # every rank's device; mixed precision/backend refused
        # train.micro_batch_sizes=auto: the layout comes from timing the model on every rank (see _engine).
        self.layout = None if balance.is_auto(cfg.train) else batch_layout(cfg.train, cfg.hardware, self.world)
        self.batch_split: dict = {}
        self.engine = self._engine()
        self.device = self.engine.device
        self.languages = sorted(set(self.packed.languages))
        self.stop = StopRequest().install()

    def _engine(self) -> Any:
        if self.cfg.train.zero_stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            # While this object lives, transformers builds and loads models sharded (zero.Init).
            self._hf_ds = HfDeepSpeedConfig(deepspeed_config(self.cfg, self.layout, self.rank))
        model = build_model(self.cfg, self.vocab_size, self.tokenizer)
        if self.layout is None:
            self.layout, self.batch_split = balance.balanced_layout(self.cfg, model, self.sampler, self.env,
                                                                    self.ranks, self.root, self.vocab_size)
        if self.cfg.hardware.compile:
            model.compile()
        engine, self.ds_config = build_engine(self.cfg, model, self.layout, self.rank)
        return engine

    # ---- one optimizer step ------------------------------------------------------------------

    def _all_reduce(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def train_step(self, step: int, micro_batches: list[dict], extra: list[float] = ()) -> dict:
        """Forward/backward every kept micro-batch and step; gradients equal d(sum loss)/d(theta) / N_global.

        N_global counts the target tokens of the kept micro-batches on all ranks (all of them unless
        train.on_nonfinite=skip drops some). A step with nothing kept on any rank calls no DeepSpeed
        step: weights, optimizer state and LR schedule stay as they are. `extra` (per-rank numbers for
        the metrics) rides on the one all-reduce after the step.
        """
        keep = self._kept_micro_batches(step, micro_batches)
        per_rank, dropped, stop = self._agree(micro_batches, keep)
        global_tokens = max(1.0, sum(per_rank))
        # DeepSpeed averages gradients over ranks; multiplying by world undoes it (no 1/accumulation:
        # backward is called with scale_wrt_gas=False), so the update sees sum-of-losses / N_global.
        scale = self.world / global_tokens
        applied = dropped < self.world * len(micro_batches)
        scale_before = self.overflow_guard.scale()
        loss_sum, bad, started = 0.0, 0.0, time.perf_counter()
        for mb, kept in zip(micro_batches, keep, strict=True) if applied else ():
            loss = packed_loss_sum(self.engine, mb, self.device)[0] if kept else self._dropped_loss()
            finite = bool(loss.isfinite())
            loss_sum += float(loss.item()) if finite else 0.0
            bad += 0.0 if finite else 1.0
            self.engine.backward(loss * scale, scale_wrt_gas=False)
            self.engine.step()
        if not applied:
            self.engine.skipped_steps += 1  # DeepSpeed's own count of skipped steps, kept in its checkpoints
        # Each rank's own time in forward and backward (waits inside DeepSpeed's reductions included) in its slot.
        busy = [time.perf_counter() - started if r == self.rank else 0.0 for r in range(self.world)]
        reduced = self._all_reduce([loss_sum, bad, *extra, *busy])
        norm = self._check_step(step, reduced[1] > 0, scale_before, applied)
        return {"loss": reduced[0] / global_tokens, "tokens_per_rank": per_rank, "global_tokens": global_tokens,
                "stop": stop, "skipped_batches": dropped, "step_applied": applied and self.engine.was_step_applied(),
                "grad_norm": norm, "extra": reduced[2:2 + len(extra)], "rank_seconds": reduced[2 + len(extra):]}

    def _kept_micro_batches(self, step: int, micro_batches: list[dict]) -> list[bool]:
        """All micro-batches, or with train.on_nonfinite=skip those whose loss is finite on every rank.

        Skip mode runs each forward once without gradients first (about a third more compute per
        step), so that the normaliser leaves out the dropped tokens before any backward. Ranks drop
        the same micro-steps: ZeRO-2 reduces gradients bucket by bucket in the order their hooks
        fire, and a zero loss fires them in another order than a real backward.
        """
        import torch

        if self.cfg.train.on_nonfinite.value != "skip":
            return [True] * len(micro_batches)
        with torch.no_grad():
            local = [float(not packed_loss_sum(self.engine, mb, self.device)[0].isfinite()) for mb in micro_batches]
        keep = [bad == 0 for bad in self._all_reduce(local)]
        if all(keep):
            return keep
        if self.cfg.train.zero_stage == 3:
            # ZeRO-3 holds only a shard of each parameter outside forward: no zero loss reaches them all.
            raise NonFiniteLoss(step, float("nan"), hint="train.on_nonfinite=skip needs train.zero_stage<=2")
        log.warning("non-finite loss at step %d: dropping micro-step(s) %s on every rank (non-finite on rank %d: %s)",
                    step, [i for i, k in enumerate(keep) if not k], self.rank, [i for i, b in enumerate(local) if b])
        return keep

    def _agree(self, micro_batches: list[dict], keep: list[bool]) -> tuple[list[float], int, bool]:
        """Kept target tokens per rank, dropped micro-batches on all ranks, stop request: one all-reduce."""
        local = sum(int((mb["labels"] != -100).sum()) for mb, kept in zip(micro_batches, keep, strict=True) if kept)
        agreed = self._all_reduce([local if r == self.rank else 0 for r in range(self.world)]
                                  + [float(self.stop.requested)])
        return agreed[: self.world], keep.count(False) * self.world, agreed[-1] > 0

    def _dropped_loss(self) -> Any:
        """A zero that reaches every parameter, so DeepSpeed's gradient hooks and reductions run as usual."""
        # Empty slices: zero whatever the weights hold (a NaN weight times 0 would still be NaN).
        return sum(p.narrow(0, 0, 0).sum() for p in self.engine.module.parameters())

    def _check_step(self, step: int, loss_nonfinite: bool, scale_before: float, applied: bool) -> float:
        """The step's gradient norm; raises NonFiniteLoss when the run should stop."""
        raw = self.engine.get_global_grad_norm() if applied else None
        # ZeRO-0 without clipping computes no norm (None): unknown, not a failure; logged as NaN.
        norm = float("nan") if raw is None else float(raw)
        if self.overflow_guard.active:  # fp16: a non-finite loss or gradient is an overflow DeepSpeed skipped
            if applied:
                self.overflow_guard.check(step, loss_nonfinite, scale_before)
            return norm
        if loss_nonfinite:  # with skip: finite in the no-grad forward, not in the real one
            raise NonFiniteLoss(step, float("nan"))
        if self.cfg.train.on_nonfinite.value == "skip":
            return norm
        if raw is not None and not math.isfinite(norm) and applied:
            raise NonFiniteLoss(step, norm, what="gradient norm")
        return norm

    @property
    def overflow_guard(self) -> OverflowGuard:
        if "_overflow_guard" not in self.__dict__:
            self._overflow_guard = OverflowGuard(self.engine, int(self.cfg.train.max_overflow_steps))
        return self._overflow_guard

    # ---- the loop ----------------------------------------------------------------------------

    def resume(self) -> int:
        """Load the newest verified checkpoint (rank 0 picks it for every rank); returns its step."""
        import torch.distributed as dist

        if self.rank == 0:
            ckpt.remove_stale(self.root)
        self.resumed_from: tuple[int, Path] | None = None
        if not self.cfg.train.checkpoint.resume:
            return 0
        choice = [ckpt.latest_checkpoint(self.root) if self.rank == 0 else None]
        dist.broadcast_object_list(choice, src=0)
        if choice[0] is None:
            return 0
        step, folder = choice[0]
        meta = ckpt.read_meta(folder)
        self._check_global_batch(folder, meta.get("global_batch_size"))
        self._check_model(folder)
        same_layout = client_world(folder) == self.world and client_zero_stage(folder) in (-1, self.zero_stage)
        if not same_layout:
            ckpt.use_universal(folder, self.rank, self.engine)
        client = ckpt.load_checkpoint(self.engine, folder, self.rank, same_world=same_layout)
        if "global_batch_size" not in meta and client.get("step"):  # older checkpoints: no meta.json
            self._check_global_batch(folder, int(client.get("consumed_samples", 0)) // int(client["step"]))
        self.tokens_seen = dict(client.get("tokens_seen", {}))
        step = int(client.get("step", step))
        self.resumed_from = (step, folder)
        log.info("resumed from %s (step %d)", folder, step)
        return step

    @property
    def zero_stage(self) -> int:
        return int(self.cfg.train.zero_stage)

    def _check_global_batch(self, folder: Path, saved: int | None) -> None:
        """The sample order is a function of the global index, so only the same global batch resumes exactly."""
        if saved and int(saved) != self.layout.global_batch:
            raise ConfigError(f"train.global_batch_size is {self.layout.global_batch} but checkpoint {folder} was "
                              f"written with {saved}: resuming would repeat or skip samples; keep "
                              f"train.global_batch_size={saved}, or start afresh with a new run.dir or "
                              "train.checkpoint.resume=false")

    def _check_model(self, folder: Path) -> None:
        """Before DeepSpeed reads a shard: another model shape, vocabulary or ZeRO family cannot load it."""
        differences = ckpt.model_differences(folder, self.cfg, ckpt.model_signature(self.engine.module))
        saved_stage = client_zero_stage(folder)
        if saved_stage != -1 and not ckpt.zero_stages_convert(saved_stage, self.zero_stage):
            differences.append(f"train.zero_stage {saved_stage} -> {self.zero_stage}")
        if differences:
            raise ConfigError(f"checkpoint {folder} cannot be resumed by this run ({'; '.join(differences)}): "
                              "start afresh with a new run.dir, or set train.checkpoint.resume=false to start "
                              "from step 0 in this one")

    def fit(self) -> dict:
        from triglot.tracking import start_tracker

        self.tokens_seen: dict[str, int] = {}
        start = self.resume()
        if self.rank == 0:
            (self.root / PREEMPTED).unlink(missing_ok=True)
        steps = int(self.cfg.train.steps)
        tracker = start_tracker(self.cfg, run_dir(self.cfg), "train", rank=self.rank, metrics_dir=self.root)
        if self.resumed_from:
            tracker.log({"resumed_from": self.resumed_from[0]}, step=self.resumed_from[0])
        metrics = StepMetrics(self, tracker)
        samples = SampleLog(self.root / "samples", self.rank, start) if self.cfg.train.log_samples else None
        loader = Prefetcher(self.sampler, self.layout, self.rank, start, steps, self.cfg.train.prefetch)
        last = start
        try:
            for _ in range(start, steps):
                step, indices, batches, wait = loader.next()
                t0 = time.perf_counter()
                lr = self.engine.get_lr()[0]
                out = self._guarded_step(step, batches, metrics.local_counts(batches, wait)) | {"lr": lr}
                last = step + 1
                metrics.record(last, out, time.perf_counter() - t0)
                if samples:
                    samples.write(last, indices)
                self._validate_if_due(last, tracker)
                if out["stop"] or self._checkpoint_due(last):
                    folder = self.save(last)
                    if out["stop"]:
                        self._mark_preempted(last, folder)
                        raise Preempted(last, str(folder))
        finally:
            loader.close()
            tracker.finish()
        return metrics.summary(last)

    def _mark_preempted(self, step: int, folder: Path) -> None:
        """`<checkpoints>/PREEMPTED` tells a launcher (torchrun itself exits 1) that a requeue resumes."""
        if self.rank == 0:
            (self.root / PREEMPTED).write_text(json.dumps({"step": step, "checkpoint": str(folder)}) + "\n")

    def _guarded_step(self, step: int, batches: list[dict], extra: list[float]) -> dict:
        try:
            return self.train_step(step + 1, batches, extra)
        except RuntimeError as err:
            if is_oom(err):
                raise MemoryError(oom_message(step + 1, self.cfg, err)) from err
            raise

    def _checkpoint_due(self, step: int) -> bool:
        every = int(self.cfg.train.checkpoint.every)
        return step == int(self.cfg.train.steps) or (every > 0 and step % every == 0)

    def _validate_if_due(self, step: int, tracker: Any) -> None:
        every = int(self.cfg.train.val_every)
        if every > 0 and len(self.val_docs) and (step % every == 0 or step == int(self.cfg.train.steps)):
            tracker.log(validate(self), step=step)

    def save(self, step: int) -> Path:
        """Collective: write, export and commit checkpoint `step`; DiskFull when it does not fit."""
        import torch.distributed as dist

        client = {"step": step, "consumed_samples": step * self.layout.global_batch, "world_size": self.world,
                  "tokens_seen": self.tokens_seen,
                  # Lets DeepSpeed convert the checkpoint to its universal form for another world size.
                  "universal_checkpoint_info": {"universal_checkpoint_version": 0.2}}
        meta = {"step": step, "world_size": self.world, "zero_stage": self.zero_stage,
                "global_batch_size": self.layout.global_batch, **ckpt.model_signature(self.engine.module)}
        if self.batch_split:  # train.micro_batch_sizes=auto: reused on resume while the hardware is the same
            meta["batch_split"] = self.batch_split
        extra = {"config.yaml": to_yaml(self.cfg), "lineage.json": self.lineage(), ckpt.META: meta}
        needed = self._check_space(step)
        folder = ckpt.save_checkpoint(self.engine, self.root, step, self.rank, client, extra, dist.barrier,
                                      self._any_rank, needed=needed)
        dist.barrier()
        if self._any_rank(ckpt.ran_out_of_space(lambda: self._export_and_commit(folder, step))):
            if self.rank == 0:
                shutil.rmtree(folder, ignore_errors=True)  # uncommitted: give the space back
            raise ckpt.disk_full(folder, needed, self.root)
        return folder

    def _export_and_commit(self, folder: Path, step: int) -> None:
        if self.cfg.train.checkpoint.export_hf and self.exports_every_save:
            self.export(folder / "hf")
        if self.rank == 0:
            ckpt.commit(folder, step)
            ckpt.prune(self.root, int(self.cfg.train.checkpoint.keep_last))

    def _any_rank(self, flag: bool) -> bool:
        """Collective: true on every rank when it is true on any (the all-reduce doubles as a barrier)."""
        return bool(self._all_reduce([float(flag)])[0]) if self.world > 1 else flag

    def _check_space(self, step: int) -> int:
        """Collective: every rank has room for another checkpoint the size of the last one, or all stop."""
        found = ckpt.complete_checkpoints(self.root)
        last = ckpt.checkpoint_bytes(found[-1][1]) if found else 0
        if self._any_rank(ckpt.free_bytes(self.root) < last):
            raise ckpt.disk_full(self.root / ckpt.step_name(step), last, self.root, before=True)
        return last or self._estimated_checkpoint_bytes()

    def _estimated_checkpoint_bytes(self) -> int:
        """Before the first checkpoint, for the disk-full message: weights, plus fp32 master and two Adam
        moments per trainable parameter (ZeRO-3 parameters report their full size as ds_numel)."""
        params = [(getattr(p, "ds_numel", p.numel()), p.element_size(), p.requires_grad)
                  for p in self.engine.module.parameters()]
        weights = sum(n * size for n, size, _ in params)
        exported = weights if self.cfg.train.checkpoint.export_hf and self.exports_every_save else 0
        return weights + exported + sum(12 * n for n, _, trains in params if trains)

    def export(self, out_dir: Path) -> None:
        """Hugging Face folder (sharded safetensors, config, tokenizer) of the current weights, from any ZeRO stage;
        streamed a module at a time."""
        export_hf(self.engine.module, out_dir, self.tokenizer_dir, self.cfg.train.zero_stage, self.rank == 0,
                  self.cfg.train.export.max_shard_size)

    @property
    def exports_every_save(self) -> bool:
        """Models above train.export.every_save_max_params export at the end and on request (`triglot export`)."""
        if "_exports_every_save" not in self.__dict__:
            params, limit = parameter_count(self.engine.module), int(self.cfg.train.export.every_save_max_params)
            self._exports_every_save = params <= limit
            if not self._exports_every_save and self.rank == 0:
                log.info("%d parameters > train.export.every_save_max_params=%d: checkpoints are not exported to "
                         "Hugging Face format as they are saved; the run exports at its end, and `triglot export "
                         "CHECKPOINT OUT` converts any checkpoint", params, limit)
        return self._exports_every_save

    def lineage(self) -> dict:
        data = StageManifest.load(self.data_dir) or {}
        tok = StageManifest.load(self.tokenizer_dir) if self.tokenizer_dir else None
        return {"data_dir": str(self.data_dir), "data_manifest": data, "tokenizer_dir": str(self.tokenizer_dir or ""),
                "tokenizer_manifest": tok or {}, "packed_meta": self.packed.meta}


def client_world(folder: Path) -> int:
    """World size the checkpoint was written at: meta.json, else (older ones) DeepSpeed's model states."""
    import torch

    meta = ckpt.read_meta(folder)
    if "world_size" in meta:
        return int(meta["world_size"])
    # ZeRO-1/2 write mp_rank_00_model_states.pt, ZeRO-3 zero_pp_rank_0_mp_rank_00_model_states.pt.
    states = sorted((folder / ckpt.STATE_TAG).glob("*mp_rank_*_model_states.pt"))
    if not states:
        return -1
    return int(torch.load(states[0], weights_only=False, map_location="cpu").get("world_size", -1))


def client_zero_stage(folder: Path) -> int:
    """ZeRO stage the checkpoint was written with (-1: unknown, an older checkpoint without meta.json)."""
    meta = ckpt.read_meta(folder)
    if "zero_stage" in meta:
        return int(meta["zero_stage"])
    return 3 if list((folder / ckpt.STATE_TAG).glob("zero_pp_rank_*_model_states.pt")) else -1


def run_train_stage(cfg: Any, force: bool = False) -> dict:
    """Train (or resume) on this rank; skipped when the checkpoint folder's manifest is current."""
    from triglot.hardware import get_accelerator

    get_accelerator()
    data_dir, tokenizer_dir = resolve_inputs(cfg)
    root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
    inputs = [data_dir] + ([tokenizer_dir] if tokenizer_dir else [])
    manifest = StageManifest.open(root, "train", stage_config(cfg), inputs)
    if manifest.is_current() and not force:
        log.info("train: %s is current; skipping (use --force to retrain)", root)
        return manifest.previous
    init_distributed(cfg, read_dist_env())
    preflight(float(cfg.train.preflight_timeout_s))
    trainer = Trainer(cfg, data_dir, tokenizer_dir)
    with training_marker(root, trainer.rank):
        return fit_and_export(trainer, root, manifest)


def fit_and_export(trainer: Trainer, root: Path, manifest: StageManifest, **extra: Any) -> dict:
    """Train to the end, export to <run.dir>/export, and record the stage (rank 0) once every rank is done.

    The stop handlers stay until the stage is recorded: a SIGTERM/SIGUSR1 that lands after the last step
    (Slurm's time-limit warning, a preemption) has nothing left to save, so the export finishes and the
    rank exits 0 instead of dying of the signal's default action.
    """
    import torch.distributed as dist

    try:
        summary = trainer.fit()
        export = run_dir(trainer.cfg) / "export"
        trainer.export(export)
        dist.barrier()
        if trainer.rank == 0:
            saved = ckpt.complete_checkpoints(root)  # just committed: sizes suffice, no second read of every file
            marker = [saved[-1][1] / ckpt.COMPLETE] if saved else []
            manifest.write(outputs=[export, *marker], counts=summary, export=str(export), **extra)
            if trainer.stop.requested:
                _report_late_stop(trainer.stop.signal_name, root)
        return summary
    finally:
        trainer.stop.uninstall()


def _report_late_stop(signal_name: str, root: Path) -> None:
    """The line (exit code 0) that a launcher ends with when its stop signal came after the last step.

    torchrun itself exits 128 + the signal after passing one on; this report, through the same channel as
    a rank's user error, lets `run`, `launch local` and the job script exit 0 and say why, not requeue.
    """
    from triglot.cli import report_user_error

    report_user_error(f"triglot: {signal_name} arrived after the last step; the run finished and is recorded in "
                      f"{root}; nothing to resume (run the same command again for any stages after it)", code=0)
