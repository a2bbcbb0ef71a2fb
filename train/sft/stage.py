"""Supervised fine-tuning on the pretraining core: `train.trainer.Trainer` with chat data and optional LoRA.

`run_sft_training(cfg)` fine-tunes with the config as given; `run_sft_stage(cfg)` is the `sft` stage of
a pipeline run: it starts from the run's pretraining export and writes below <run.dir>/sft/.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from triglot.train.coordination import StopRequest, preflight
from triglot.train.engine import batch_layout, build_engine, deepspeed_config, init_distributed
from triglot.train.model import build_model, load_tokenizer
from triglot.train.run_state import training_marker
from triglot.train.sft.data import build_sft_sampler, sft_input_files
from triglot.train.sft.lora import apply_lora, export_adapter, export_merged
from triglot.train.trainer import Trainer, fit_and_export

from triglot.config import to_container
from triglot.dist import read_dist_env
from triglot.errors import ConfigError, InputError
from triglot.manifest import StageManifest
from triglot.paths import run_dir, stage_dir
from triglot.tracking import run_group

log = logging.getLogger(__name__)


def resolve_start(cfg: Any) -> tuple[Path, Path]:
    """The Hugging Face folder fine-tuning starts from, and the tokenizer folder (model.tokenizer or that folder)."""
    if not cfg.model.pretrained:
        raise ConfigError("fine-tuning needs model.pretrained: a Hugging Face folder such as <run.dir>/export")
    model = Path(cfg.model.pretrained)
    if (model / "hf" / "config.json").is_file():  # a training checkpoint folder
        model = model / "hf"
    if not (model / "config.json").is_file():
        raise InputError(f"model.pretrained: {model} is not a Hugging Face model folder (no config.json); "
                         "point it at a pretraining export or a checkpoint's hf/ folder")
    tokenizer = Path(cfg.model.tokenizer) if cfg.model.tokenizer else model
    if not (tokenizer / "tokenizer_config.json").is_file():
        raise InputError(f"no tokenizer in {tokenizer} (no tokenizer_config.json); set model.tokenizer")
    return model, tokenizer


class SftTrainer(Trainer):
    """The pretraining loop, fed with packed chat conversations; the model may carry LoRA adapters.

    `section` names the config section that holds the tuning's data, LoRA and export choices (`sft`, or `dpo`
    for the preference trainer built on this one)."""

    section = "sft"

    def __init__(self, cfg: Any, tokenizer_dir: Path):  # replaces Trainer.__init__'s packed-shard inputs
        self._start(cfg, tokenizer_dir)
        self.stop = StopRequest().install()

    def _start(self, cfg: Any, tokenizer_dir: Path) -> None:
        """Ranks, tokenizer, sampler and engine, in the order the model needs them."""
        import torch.distributed as dist

        self.cfg, self.env = cfg, read_dist_env()
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
        self.data_dir, self.tokenizer_dir = None, tokenizer_dir
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.sampler = self._sampler()  # may add chat tokens: before the model is built
        self.vocab_size = max(int(cfg.model.vocab_size), len(self.tokenizer))
        self.val_docs: list[int] = []
        self.layout = batch_layout(cfg.train, cfg.hardware, self.world)
        self.engine = self._engine()
        self.device = self.engine.device
        self.languages = sorted({d.language for d in self.sampler.datasets})

    @property
    def tuning(self) -> Any:
        return self.cfg[self.section]

    def _sampler(self) -> Any:
        return build_sft_sampler(self.cfg, self.tokenizer)

    def _engine(self) -> Any:
        ds_config = deepspeed_config(self.cfg, self.layout, self.rank)
        if self.cfg.train.zero_stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds = HfDeepSpeedConfig(ds_config)  # from_pretrained loads straight into shards
        import torch

        torch.manual_seed(int(self.cfg.run.seed))  # rows for added chat tokens: the same on every rank and run
        model = build_model(self.cfg, self.vocab_size, self.tokenizer)
        if self.tuning.lora.enabled:
            model = apply_lora(model, self.tuning.lora)
        engine, self.ds_config = build_engine(self.cfg, model, self.layout, self.rank)
        return engine

    def export(self, out_dir: Path) -> None:
        """A plain Hugging Face folder: LoRA merged (<section>.lora.merge_on_export), chat template included."""
        if self.tuning.lora.enabled and not self.tuning.lora.merge_on_export:
            export_adapter(self.engine.module, out_dir, self.tokenizer, self.cfg.train.zero_stage, self.rank == 0)
            return
        export_merged(self.engine.module, out_dir, self.tokenizer, self.cfg.train.zero_stage, self.rank == 0,
                      max_shard_size=self.cfg.train.export.max_shard_size)

    def manifest_extra(self) -> dict:
        """Fields the stage manifest records beside the counts."""
        return {}

    def lineage(self) -> dict:
        start = Path(self.cfg.model.pretrained)
        return {"pretrained": str(start), "pretrained_manifest": StageManifest.load(start.parent) or {},
                "tokenizer_dir": str(self.tokenizer_dir), "sft_datasets": to_container(self.cfg.sft.datasets),
                "sft_files": sft_input_files(self.cfg)}


SFT_DECIDING = ("datasets", "template", "system_prompt", "pack", "overlong", "lora")


def tuning_stage_config(cfg: Any, section: str, deciding: tuple[str, ...]) -> Any:
    """What decides a fine-tuning result, for the manifest (tracking, launch and generation left out)."""
    tuning = {k: to_container(cfg[section][k]) for k in deciding}
    return OmegaConf.create({k: to_container(cfg[k]) for k in ("model", "train", "hardware")}
                            | {section: tuning, "seed": int(cfg.run.seed)})


def sft_stage_config(cfg: Any) -> Any:
    return tuning_stage_config(cfg, "sft", SFT_DECIDING)


def run_tuning(cfg: Any, stage: str, input_files: Callable[[Any], list], stage_config: Callable[[Any], Any],
               trainer: Callable[[Any, Path, Path], SftTrainer], force: bool = False) -> dict:
    """Fine-tune (or resume) on this rank from model.pretrained; skipped when the stage's manifest is current.

    `trainer(cfg, model_dir, tokenizer_dir)` builds the stage's trainer once the ranks are up."""
    from triglot.hardware import get_accelerator

    get_accelerator()
    model_dir, tokenizer_dir = resolve_start(cfg)
    cfg.model.pretrained = str(model_dir)
    root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
    inputs = [model_dir, *input_files(cfg)] + ([tokenizer_dir] if tokenizer_dir != model_dir else [])
    manifest = StageManifest.open(root, stage, stage_config(cfg), inputs)
    if manifest.is_current() and not force:
        log.info("%s: %s is current; skipping (use --force to retrain)", stage, root)
        return manifest.previous
    init_distributed(cfg, read_dist_env())
    preflight(float(cfg.train.preflight_timeout_s))
    tuner = trainer(cfg, model_dir, tokenizer_dir)
    with training_marker(root, tuner.rank):
        return fit_and_export(tuner, root, manifest, lora=bool(tuner.tuning.lora.enabled), **tuner.manifest_extra())


def run_sft_training(cfg: Any, force: bool = False) -> dict:
    """Fine-tune (or resume) on this rank from model.pretrained on sft.datasets; skipped when current."""
    return run_tuning(cfg, "sft", sft_input_files, sft_stage_config,
                      lambda c, _model, tokenizer: SftTrainer(c, tokenizer), force=force)


def pipeline_tuning_config(cfg: Any, section: str, start: Path) -> Any:
    """The config of a pipeline run's fine-tuning stage `section`: from <section>.init_from (default `start`),
    with <section>.train over the train section, writing checkpoints, export and metrics below
    <run.dir>/<section>/."""
    out = copy.deepcopy(cfg)
    parent = run_dir(cfg)
    out.model.pretrained = cfg[section].init_from or str(start)
    out.run.dir = str(parent / section)
    out.run.name = f"{cfg.run.name}-{section}"
    out.tracking.group = run_group(cfg)  # the pretraining run's W&B group: one `wandb sync` finds both
    out.train.checkpoint.dir = ""
    try:
        out.train = OmegaConf.merge(out.train, cfg[section].train)
    except Exception as err:  # omegaconf's key and type errors
        raise ConfigError(f"{section}.train: {str(err).splitlines()[0]}; its keys are train options "
                          "(steps, lr, ...)") from err
    return out


def pipeline_sft_config(cfg: Any) -> Any:
    """The `sft` stage's config: from sft.init_from (default <run.dir>/export), writing below <run.dir>/sft/."""
    return pipeline_tuning_config(cfg, "sft", run_dir(cfg) / "export")


def run_sft_stage(cfg: Any, force: bool = False) -> dict:
    """The `sft` stage of `triglot run`: fine-tune the run's pretrained export on sft.datasets."""
    return run_sft_training(pipeline_sft_config(cfg), force=force)
