"""Preference tuning (DPO) on the training core: `run_dpo_training(cfg)` tunes with the config as given;
`run_dpo_stage(cfg)` is the `dpo` stage of a pipeline run: from the run's SFT (or pretraining) export to <run.dir>/dpo/.
"""

from __future__ import annotations

from typing import Any

from triglot.train.dpo.data import dpo_input_files
from triglot.train.dpo.trainer import DpoTrainer
from triglot.train.sft.stage import pipeline_tuning_config, run_tuning, tuning_stage_config

from triglot.paths import run_dir

DECIDING = ("datasets", "loss", "beta", "label_smoothing", "simpo_gamma", "reference", "template", "system_prompt",
            "pack", "overlong", "lora")


def dpo_stage_config(cfg: Any) -> Any:
    """What decides a preference-tuning result, for the manifest (tracking, launch and generation left out)."""
    return tuning_stage_config(cfg, "dpo", DECIDING)


def run_dpo_training(cfg: Any, force: bool = False) -> dict:
    """Preference-tune (or resume) on this rank from model.pretrained on dpo.datasets; skipped when current."""
    return run_tuning(cfg, "dpo", dpo_input_files, dpo_stage_config, DpoTrainer, force=force)


def pipeline_dpo_config(cfg: Any) -> Any:
    """The config of a pipeline run's `dpo` stage: from dpo.init_from (default <run.dir>/sft/export when the run
    has an sft stage, else <run.dir>/export), dpo.train over the train section, writing below <run.dir>/dpo/."""
    parent = run_dir(cfg)
    start = parent / "sft" / "export" if "sft" in cfg.run.stages else parent / "export"
    return pipeline_tuning_config(cfg, "dpo", start)


def run_dpo_stage(cfg: Any, force: bool = False) -> dict:
    """The `dpo` stage of `triglot run`: preference-tune the run's SFT (or pretraining) export on dpo.datasets."""
    return run_dpo_training(pipeline_dpo_config(cfg), force=force)
