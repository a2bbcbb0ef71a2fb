"""Preference tuning (DPO) on the training core: `run_dpo_training(cfg)` tunes with the config as given;
`run_dpo_stage(cfg)` is the `dpo` stage of a pipeline run: from the run's SFT (or pretraining) export to <run.dir>/dpo/.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from omegaconf import OmegaConf
from triglot.train.coordination import preflight
from triglot.train.dpo.data import dpo_input_files
from triglot.train.dpo.trainer import DpoTrainer
from triglot.train.engine import init_distributed
from triglot.train.run_state import training_marker
from triglot.train.sft.stage import resolve_start
from triglot.train.trainer import fit_and_export

from triglot.config import to_container
from triglot.dist import read_dist_env
from triglot.errors import ConfigError
from triglot.manifest import StageManifest
from triglot.paths import run_dir, stage_dir
from triglot.tracking import run_group

log = logging.getLogger(__name__)
DECIDING = ("datasets", "loss", "beta", "label_smoothing", "simpo_gamma", "reference", "template", "system_prompt",
            "pack", "overlong", "lora")


def dpo_stage_config(cfg: Any) -> Any:
    """What decides a preference-tuning result, for the manifest (tracking, launch and generation left out)."""
    dpo = {k: to_container(cfg.dpo[k]) for k in DECIDING}
    return OmegaConf.create({k: to_container(cfg[k]) for k in ("model", "train", "hardware")}
                            | {"dpo": dpo, "seed": int(cfg.run.seed)})


def run_dpo_training(cfg: Any, force: bool = False) -> dict:
    """Preference-tune (or resume) on this rank from model.pretrained on dpo.datasets; skipped when current."""
    from triglot.hardware import get_accelerator

    get_accelerator()
    model_dir, tokenizer_dir = resolve_start(cfg)
    cfg.model.pretrained = str(model_dir)
    root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
    inputs = [model_dir, *dpo_input_files(cfg)] + ([tokenizer_dir] if tokenizer_dir != model_dir else [])
    manifest = StageManifest.open(root, "dpo", dpo_stage_config(cfg), inputs)
    if manifest.is_current() and not force:
        log.info("dpo: %s is current; skipping (use --force to retrain)", root)
        return manifest.previous
    init_distributed(cfg, read_dist_env())
    preflight(float(cfg.train.preflight_timeout_s))
    trainer = DpoTrainer(cfg, model_dir, tokenizer_dir)
    with training_marker(root, trainer.rank):
        return fit_and_export(trainer, root, manifest, lora=bool(cfg.dpo.lora.enabled),
                              bad_records=trainer.bad_records)


def pipeline_dpo_config(cfg: Any) -> Any:
    """The config of a pipeline run's `dpo` stage: from dpo.init_from (default <run.dir>/sft/export when the run
    has an sft stage, else <run.dir>/export), dpo.train over the train section, writing below <run.dir>/dpo/."""
    out = copy.deepcopy(cfg)
    parent = run_dir(cfg)
    start = parent / "sft" / "export" if "sft" in cfg.run.stages else parent / "export"
    out.model.pretrained = cfg.dpo.init_from or str(start)
    out.run.dir = str(parent / "dpo")
    out.run.name = f"{cfg.run.name}-dpo"
    out.tracking.group = run_group(cfg)  # the pretraining run's W&B group
    out.train.checkpoint.dir = ""
    try:
        out.train = OmegaConf.merge(out.train, cfg.dpo.train)
    except Exception as err:  # omegaconf's key and type errors
        raise ConfigError(f"dpo.train: {str(err).splitlines()[0]}; its keys are train options (steps, lr, ...)") from err
    return out


def run_dpo_stage(cfg: Any, force: bool = False) -> dict:
    """The `dpo` stage of `triglot run`: preference-tune the run's SFT (or pretraining) export on dpo.datasets."""
    return run_dpo_training(pipeline_dpo_config(cfg), force=force)
