"""Find the model to score: a Hugging Face folder, a training checkpoint's hf/ export, or a run's newest.

Training checkpoints are <run.dir>/checkpoints/step-XXXXXXXX/ with a COMPLETE marker written last;
they are checked with training's own verification (sizes and checksums), so both skip the same ones.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triglot.train.checkpoint import COMPLETE, verify

from triglot.errors import InputError

STEP_DIR = re.compile(r"^step-(\d{8})$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    hf_dir: Path  # folder AutoModelForCausalLM.from_pretrained reads
    source: Path  # what the user named (checkpoint folder or HF folder)
    step: int | None  # training step, when known
    label: str  # results folder name below the eval output dir


def _is_hf(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _step_of(folder: Path) -> int | None:
    match = STEP_DIR.match(folder.name)
    return int(match.group(1)) if match else None


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """step-* folders that verify as training checks them and have an hf/ export, oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for folder in sorted((p for p in checkpoints_dir.iterdir() if _step_of(p) is not None), key=_step_of):
        problem = verify(folder) or ("" if _is_hf(folder / "hf") else "no hf/ export")
        if problem and (folder / COMPLETE).is_file():  # an unfinished save is not worth a warning
            log.warning("skipping checkpoint %s: %s", folder, problem)
        if not problem:
            found.append(folder)
    return found


def resolve(path: str | Path) -> Checkpoint:
    """A checkpoint folder (uses its hf/) or a Hugging Face folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist; pass a Hugging Face folder or "
                         f"<run.dir>/checkpoints/step-XXXXXXXX/")
    step = _step_of(path)
    if step is not None or (path / "hf").is_dir():
        problem = verify(path) if step is not None else ""
        if problem:
            raise InputError(f"checkpoint {path} is unfinished or damaged ({problem}); pass another checkpoint")
        if not _is_hf(path / "hf"):
            raise InputError(f"checkpoint {path} has no Hugging Face export at {path / 'hf'} (config.json missing)")
        return Checkpoint(path / "hf", path, step, path.name)
    if _is_hf(path):
        if path.name == "hf" and _step_of(path.parent) is not None:
            return resolve(path.parent)
        return Checkpoint(path, path, _export_step(path), path.name or "model")
    raise InputError(f"{path} is neither a Hugging Face folder (config.json) nor a checkpoint folder with hf/")


def _export_step(folder: Path) -> int | None:
    """The training step an export records, if it says (trainer_state.json or triglot's metadata)."""
    for name in ("trainer_state.json", "triglot.json", "export.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in ("global_step", "step"):
            if isinstance(data.get(key), int):
                return data[key]
    return None


def default_checkpoint(run_dir: Path) -> Checkpoint:
    """The run's newest complete checkpoint, else its export/ folder."""
    done = complete_checkpoints(run_dir / "checkpoints")
    if done:
        return resolve(done[-1])
    if _is_hf(run_dir / "export"):
        return resolve(run_dir / "export")
    raise InputError(f"no checkpoint to score: no complete {run_dir}/checkpoints/step-XXXXXXXX/ and no "
                     f"{run_dir}/export/; train first or pass --checkpoint PATH (or set eval.checkpoint)")


def lineage(ckpt: Checkpoint) -> dict[str, Any]:
    """What made this model: its config, the checkpoint's and the training stage's manifests if present."""
    info: dict[str, Any] = {"hf_dir": str(ckpt.hf_dir), "source": str(ckpt.source), "step": ckpt.step}
    try:
        cfg = json.loads((ckpt.hf_dir / "config.json").read_text(encoding="utf-8"))
        info["model_config"] = {k: cfg.get(k) for k in ("model_type", "architectures", "hidden_size",
                                                        "num_hidden_layers", "vocab_size", "torch_dtype", "dtype")}
    except (OSError, ValueError):
        pass
    for where in (ckpt.source, ckpt.hf_dir, ckpt.source.parent):
        for name in ("manifest.json", "triglot.json", "export.json"):
            path = where / name
            if path.is_file():
                try:
                    info[f"{where.name}/{name}"] = json.loads(path.read_text(encoding="utf-8"))
                except ValueError:
                    continue
    return info
