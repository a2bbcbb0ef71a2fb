"""Whether a distributed stage's manifest is current, asked by `triglot run` before it starts torchrun.

Each check builds the stage's manifest as the stage itself does (same config section, same inputs). A
check that cannot tell (missing inputs, an error) answers False, and the stage then decides for itself
under torchrun; the stage's own inputs list is recorded in its manifest, so a stage that grows an input
makes this check answer False rather than skip wrongly.
"""

from __future__ import annotations

import logging
from typing import Any

from triglot.manifest import StageManifest

log = logging.getLogger(__name__)


def train_is_current(cfg: Any) -> bool:
    from triglot.paths import stage_dir
    from triglot.train.trainer import resolve_inputs, stage_config

    data_dir, tokenizer_dir = resolve_inputs(cfg)
    inputs = [data_dir] + ([tokenizer_dir] if tokenizer_dir else [])
    root = stage_dir(cfg, "train", cfg.train.checkpoint.dir)
    return StageManifest.open(root, "train", stage_config(cfg), inputs).is_current()


def sft_is_current(cfg: Any) -> bool:
    from triglot.paths import stage_dir
    from triglot.train.sft.data import sft_input_files
    from triglot.train.sft.stage import pipeline_sft_config, resolve_start, sft_stage_config

    sft = pipeline_sft_config(cfg)
    model_dir, tokenizer_dir = resolve_start(sft)
    sft.model.pretrained = str(model_dir)
    root = stage_dir(sft, "train", sft.train.checkpoint.dir)
    inputs = [model_dir, *sft_input_files(sft)] + ([tokenizer_dir] if tokenizer_dir != model_dir else [])
    return StageManifest.open(root, "sft", sft_stage_config(sft), inputs).is_current()


def eval_is_current(cfg: Any) -> bool:
    from triglot.eval import checkpoints
    from triglot.eval.runner import _manifest_config, eval_root, tuned_exports
    from triglot.eval.tasks import load_suites
    from triglot.paths import run_dir

    if cfg.eval.checkpoint:
        ckpts = [checkpoints.resolve(cfg.eval.checkpoint)]
    else:
        ckpts = [checkpoints.default_checkpoint(run_dir(cfg)), *[ckpt for _, ckpt in tuned_exports(cfg)]]
    loaded = load_suites(cfg.eval)
    for ckpt in ckpts:
        inputs = [ckpt.hf_dir, *[ls.suite.root for ls in loaded], *[h.path for h in cfg.eval.heldout]]
        if not StageManifest.open(eval_root(cfg) / ckpt.label, "eval", _manifest_config(cfg), inputs).is_current():
            return False
    return True


CHECKS = {"train": train_is_current, "sft": sft_is_current, "eval": eval_is_current}


def stage_is_current(name: str, cfg: Any) -> bool:
    """True when the stage would only find its manifest current; False when unsure."""
    check = CHECKS.get(name)
    if check is None:
        return False
    try:
        return bool(check(cfg))
    except Exception as err:  # noqa: BLE001 - unsure means "let the stage decide", never an error here
        log.debug("stage %s: currency check inconclusive (%s); starting it", name, err)
        return False

