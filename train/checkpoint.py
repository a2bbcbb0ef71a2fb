"""Atomic, verified training checkpoints: written aside, renamed into place, COMPLETE marker last.

`<ckpt root>/step-XXXXXXXX/` holds DeepSpeed state under `state/`, per-rank RNG states, the resolved
config, the lineage (data and tokenizer manifests), `meta.json` (world size, ZeRO stage, global batch)
and optionally an `hf/` export. COMPLETE lists every file with its size and xxh3 checksum.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from triglot.train.coordination import DiskFull

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
META = "meta.json"  # world size, ZeRO stage and global batch the checkpoint was written with
PREFIX = "step-"
TMP_PREFIX = ".tmp-step-"
STATE_TAG = "state"
UNIVERSAL_TAG = "universal"  # the same state converted for loading at another world size
CHECKSUM = "xxh3_64"  # key of the per-file checksums in COMPLETE (markers without it: sizes only)
_CHUNK = 8 << 20
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def step_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def rng_state() -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def file_checksum(path: Path) -> str:
    """xxh3-64 of the file's bytes, read in chunks (several GB/s, so a whole checkpoint is cheap)."""
    from triglot.manifest import digest_file

    return digest_file(path, xxhash.xxh3_64(), _CHUNK)


# Verified results keyed on the folder and every file's (size, mtime): eval --watch polls often.
_verified: dict[str, tuple[tuple, str]] = {}


def verify(folder: Path, checksums: bool = True) -> str:
    """Empty when the checkpoint is whole, else why not (naming the file).

    Sizes are always checked; with `checksums`, so is every file's xxh3 when the marker records them
    (markers written before checksums were recorded are checked by size only).
    """
    marker = folder / COMPLETE
    if not marker.is_file():
        return "no COMPLETE marker (partial write)"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return "COMPLETE marker unreadable"
    sums = info.get(CHECKSUM, {}) if checksums else {}
    signature = []
    for rel, size in info.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return f"{rel} missing or truncated"
        signature.append((rel, size, path.stat().st_mtime_ns))
    key = (tuple(signature), marker.stat().st_mtime_ns)
    cached = _verified.get(str(folder))
    if not sums or (cached and cached[0] == key):
        return cached[1] if sums and cached else ""
    problem = next((f"{rel} does not match its checksum (damaged after it was written)"
                    for rel, digest in sums.items() if file_checksum(folder / rel) != digest), "")
    _verified[str(folder)] = (key, problem)
    return problem


def _step_folders(root: Path) -> list[tuple[int, Path]]:
    found = []
    for folder in sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []:
        try:
            found.append((int(folder.name[len(PREFIX):]), folder))
        except ValueError:
            continue
    return found


def complete_checkpoints(root: Path, checksums: bool = False) -> list[tuple[int, Path]]:
    """(step, folder) of every whole checkpoint under `root`, oldest first; others are warned about.

    By default only sizes are checked (cheap, for pruning); `checksums=True` reads every file.
    """
    found = []
    for step, folder in _step_folders(root):
        problem = verify(folder, checksums)
        if problem:
            log.warning("skipping checkpoint %s: %s", folder, problem)
            continue
        found.append((step, folder))
    return found


def latest_checkpoint(root: Path) -> tuple[int, Path] | None:
    """The newest checkpoint whose files all match their checksums; damaged newer ones are warned about."""
    for step, folder in reversed(_step_folders(root)):
        problem = verify(folder)
        if not problem:
            return step, folder
        log.warning("skipping checkpoint %s: %s", folder, problem)
    return None


def read_meta(folder: Path) -> dict:
    """The checkpoint's meta.json (world_size, zero_stage, global_batch_size); {} for older checkpoints."""
    try:
        return json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# Config keys that decide the parameters' names and shapes, named when a resume is refused for them.
SHAPE_KEYS = ("model.arch", "model.pretrained", "model.hidden_size", "model.intermediate_size", "model.num_layers",
              "model.num_heads", "model.num_kv_heads", "model.tie_embeddings", "sft.lora.enabled", "sft.lora.rank",
              "sft.lora.target_modules", "sft.lora.modules_to_save")


def model_signature(module: Any) -> dict:
    """Vocabulary rows and a digest of every parameter's name and shape (ZeRO-3: the full, unsharded shape)."""
    digest = xxhash.xxh3_64()
    for name, param in module.named_parameters():
        digest.update(f"{name}:{tuple(getattr(param, 'ds_shape', param.shape))};".encode())
    embed = module.get_input_embeddings().weight
    return {"vocab_size": int(getattr(embed, "ds_shape", embed.shape)[0]), "parameters": digest.hexdigest()}


def _config_value(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else None
        if node is None:
            return None
    return list(node) if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig" else node


def zero_stages_convert(saved: int, now: int) -> bool:
    """Whether DeepSpeed loads a ZeRO-`saved` checkpoint into a ZeRO-`now` engine: the same stage, or 1 and 2
    (one optimizer-shard format); 0 and 3 each have their own."""
    return saved == now or {saved, now} <= {1, 2}


def model_differences(folder: Path, cfg: Any, signature: dict) -> list[str]:
    """What makes checkpoint `folder` unloadable into the model `cfg` builds ("key saved -> now"); [] if none.

    The parameter digest in meta.json decides when it is there; older checkpoints are judged by the shape
    keys of their config.yaml. Keys are named only when the parameters really differ.
    """
    import yaml

    meta = read_meta(folder)
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, ValueError):
        saved = {}
    named = [f"{key} {_config_value(saved, key)} -> {_config_value(cfg, key)}" for key in SHAPE_KEYS
             if _config_value(saved, key) != _config_value(cfg, key)]
    if "vocab_size" in meta and meta["vocab_size"] != signature["vocab_size"]:
        named.append(f"vocabulary {meta['vocab_size']} -> {signature['vocab_size']} tokens")
    if "parameters" not in meta:
        return named
    if meta["parameters"] == signature["parameters"]:
        return []
    return named or ["the parameters' names or shapes"]


def checkpoint_bytes(folder: Path) -> int:
    """Bytes of a committed checkpoint, from its marker."""
    try:
        return sum(json.loads((folder / COMPLETE).read_text(encoding="utf-8")).get("files", {}).values())
    except (OSError, ValueError):
        return 0


def free_bytes(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(root).free


def disk_full(folder: Path, needed: int, root: Path, before: bool = False) -> DiskFull:
    """One line for the user; `before`: found by the free-space check, nothing was written."""
    when = "checked before writing" if before else "the disk filled while writing"
    return DiskFull(f"no space left to save checkpoint {folder} ({when}): it needs about {needed} bytes and "
                    f"{free_bytes(root)} bytes are free on {root}; free some space, lower "
                    "train.checkpoint.keep_last or point train.checkpoint.dir at a larger disk, then rerun")


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT, also as torch.save's RuntimeError ("file write failed"), which drops the errno."""
    if isinstance(err, OSError):
        return err.errno in _DISK_FULL
    text = str(err)
    return isinstance(err, RuntimeError) and ("write failed" in text or "No space left" in text
                                              or "unexpected pos" in text)


def ran_out_of_space(write: Callable[[], Any]) -> bool:
    """Run `write`; True when it ran out of disk space (so the ranks can agree and stop together)."""
    try:
        write()
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err):
            raise
        log.debug("disk full while writing a checkpoint: %s", err)
        return True
    return False


def remove_stale(root: Path) -> None:
    """Rank 0 at start: temporary folders a failed or killed save left behind."""
    for folder in [*root.glob(f"{TMP_PREFIX}*"), *root.glob(f"{PREFIX}*/{UNIVERSAL_TAG}.tmp")]:
        log.info("removing %s left by an unfinished save", folder)
        shutil.rmtree(folder, ignore_errors=True)


def save_checkpoint(engine: Any, root: Path, step: int, rank: int, client: dict, extra_files: dict[str, Any],
                    barrier: Any, agree: Callable[[bool], bool], needed: int = 0) -> Path:
    """Collective: every rank writes its DeepSpeed shards and RNG state, then rank 0 commits.

    A rank that runs out of space still takes part in the remaining collectives; `agree` (true on every
    rank when any rank says true) then makes all ranks raise the same DiskFull, with no traceback.
    """
    import torch

    tmp = root / f"{TMP_PREFIX}{step:08d}"
    final = root / step_name(step)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    # DeepSpeed writes after its last collective but one, a closing barrier: a rank whose write failed
    # joins that barrier here, so the others do not wait on it forever.
    full = ran_out_of_space(lambda: engine.save_checkpoint(str(tmp), tag=STATE_TAG, client_state=client,
                                                           save_latest=False))
    if full:
        barrier()
    full = ran_out_of_space(lambda: torch.save(rng_state(), tmp / f"rng-rank{rank:05d}.pt")) or full
    if rank == 0 and not full:
        full = ran_out_of_space(lambda: _write_extra(tmp, extra_files))
    if agree(full):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back; a rerun starts clean
        raise disk_full(final, needed, root)
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final


def _write_extra(folder: Path, extra_files: dict[str, Any]) -> None:
    for name, value in extra_files.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        (folder / name).write_text(text, encoding="utf-8")


def commit(folder: Path, step: int) -> None:
    """Rank 0, after everything else in `folder` is written: the marker lists every file, size and checksum."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE]
    files = {str(p.relative_to(folder)): p.stat().st_size for p in paths}
    sums = {str(p.relative_to(folder)): file_checksum(p) for p in paths}
    tmp = folder / (COMPLETE + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files, CHECKSUM: sums}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / COMPLETE)


def prune(root: Path, keep_last: int) -> None:
    """Rank 0: drop all but the newest `keep_last` complete checkpoints and stale temporary folders."""
    for folder in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)
    found = complete_checkpoints(root)
    for _, folder in found[: max(0, len(found) - max(1, keep_last))]:
        shutil.rmtree(folder, ignore_errors=True)
def has_universal(folder: Path) -> bool:
    return (folder / UNIVERSAL_TAG / COMPLETE).is_file()


def to_universal(folder: Path, workers: int = 1) -> Path:
    """One process, no torch.distributed: convert `folder`'s ZeRO shards to DeepSpeed's universal form.

    Written to `universal.tmp` and renamed to `universal/` with a COMPLETE marker, so a half-finished
    conversion is never loaded. `triglot ckpt reshard` runs it before a job at a new world size.
    """
    import argparse
    import time

    from deepspeed.checkpoint import ds_to_universal

    target = folder / UNIVERSAL_TAG
    if has_universal(folder):
        log.info("%s already has a universal form (%s)", folder, target)
        return target
    log.info("converting %s to a universal checkpoint (any world size) with %d worker(s)", folder, workers)
    started = time.monotonic()
    tmp = folder / (UNIVERSAL_TAG + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    args = argparse.Namespace(input_folder=str(folder / STATE_TAG), output_folder=str(tmp),
                              num_extract_workers=workers, num_merge_workers=workers, keep_temp_folder=False,
                              strict=True, inject_missing_state=False)
    ds_to_universal.main(args)
    (tmp / COMPLETE).write_text("", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    log.info("wrote %s in %.0f s", target, time.monotonic() - started)
    return target


def use_universal(folder: Path, rank: int, engine: Any) -> None:
    """Collective: load `folder` through its universal form, converting it on rank 0 first when
    `triglot ckpt reshard` has not already done so (the other ranks wait in a barrier meanwhile)."""
    import torch.distributed as dist

    if rank == 0 and not has_universal(folder):
        to_universal(folder)
    dist.barrier()
    engine._config.load_universal_checkpoint = True  # read by load_checkpoint; no public setter


def load_checkpoint(engine: Any, folder: Path, rank: int, same_world: bool) -> dict:
    """Restore engine state (and this rank's RNG when the world size is unchanged); returns client state."""
    import torch

    tag = STATE_TAG if same_world else UNIVERSAL_TAG
    _, client = engine.load_checkpoint(str(folder), tag=tag, load_optimizer_states=True,
                                       load_lr_scheduler_states=True)
    rng_file = folder / f"rng-rank{rank:05d}.pt"
    if same_world and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return client or {}
