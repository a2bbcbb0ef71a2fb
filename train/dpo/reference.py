"""Reference log-probs of every preference pair, computed once by the starting model and stored beside the data.

The pre-pass runs before any checkpoint is loaded, so the weights are the starting model's (LoRA adapters
disabled); the result goes to <checkpoints>/reference/logps.npz with a key over the model's files and the
tokenized pairs, and a resumed run reads it back instead of computing it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from triglot.train.dpo.data import TokenizedPairs, collate_pairs, pack_pairs
from triglot.train.dpo.loss import sequence_logps

from triglot.manifest import fingerprint

log = logging.getLogger(__name__)
CACHE = "reference/logps.npz"


def cache_key(model_dir: Path, datasets: list[TokenizedPairs]) -> str:
    """Changes with the starting model's files and with any token of any pair."""
    digest = hashlib.sha256()
    for entry in fingerprint([model_dir]):
        digest.update(f"{Path(entry['path']).relative_to(model_dir)}:{entry.get('sha256')}\n".encode())
    for data in datasets:
        for chosen, rejected in data.tokens:
            digest.update(np.int64(len(chosen)).tobytes() + chosen.tobytes() + rejected.tobytes())
    return digest.hexdigest()


def reference_rows(datasets: list[TokenizedPairs], seq_len: int) -> list[list[tuple[int, int]]]:
    """Every pair once, packed greedily in dataset order into rows of seq_len tokens."""
    rows, row, used = [], [], 0
    for d, data in enumerate(datasets):
        for c, (chosen, rejected) in enumerate(data.tokens):
            n = len(chosen) + len(rejected)
            if row and used + n > seq_len:
                rows.append(row)
                row, used = [], 0
            row.append((d, c))
            used += n
    return rows + ([row] if row else [])


def adapters_disabled(module: Any) -> Any:
    """The base model's forward under a peft model (the LoRA reference); a plain model as it is."""
    return module.disable_adapter() if hasattr(module, "disable_adapter") else nullcontext()


def compute_reference(engine: Any, datasets: list[TokenizedPairs], seq_len: int, micro: int, pad_id: int,
                      rank: int, world: int) -> np.ndarray:
    """Collective: [all pairs, 2] reference log-probs; ranks share the rows and run the same number of forwards."""
    import torch
    import torch.distributed as dist

    offsets = np.cumsum([0] + [len(d.tokens) for d in datasets])
    rows = reference_rows(datasets, seq_len)
    batches = [rows[i: i + micro] for i in range(0, len(rows), micro)]
    rounds = -(-len(batches) // world)
    out = torch.zeros(int(offsets[-1]), 2, dtype=torch.float64, device=engine.device)
    engine.eval()
    with torch.no_grad(), adapters_disabled(engine.module):
        for r in range(rounds):
            b = r * world + rank
            batch = batches[b] if b < len(batches) else batches[0]  # ZeRO-3 forwards are collective
            mb = collate_pairs([pack_pairs(datasets, row, seq_len, pad_id) for row in batch])
            logps, _ = sequence_logps(engine, mb, engine.device)
            if b < len(batches):
                flat = [int(offsets[d]) + c for row in batch for d, c in row]
                out[flat] = logps.view(-1, 2).to(torch.float64)
    engine.train()
    dist.all_reduce(out)  # every pair was computed on exactly one rank
    return out.cpu().numpy()


def load_or_compute(trainer: Any, model_dir: Path) -> None:
    """Attach reference log-probs to the trainer's datasets: from the cache when its key matches, else computed."""
    import torch.distributed as dist

    datasets, path = trainer.sampler.datasets, trainer.root / CACHE
    key = [cache_key(model_dir, datasets) if trainer.rank == 0 else None]
    dist.broadcast_object_list(key, src=0)
    values = _read(path, key[0]) if trainer.rank == 0 else None
    found = [values is not None]
    dist.broadcast_object_list(found, src=0)
    if not found[0]:
        log.info("dpo: computing reference log-probs of %d pairs", sum(len(d.tokens) for d in datasets))
        values = compute_reference(trainer.engine, datasets, int(trainer.cfg.train.seq_len),
                                   max(trainer.layout.micro_sizes), trainer.sampler.pad_id, trainer.rank,
                                   trainer.world)
        if trainer.rank == 0:
            _write(path, key[0], values)
    else:
        box = [values]
        dist.broadcast_object_list(box, src=0)
        values = box[0]
        log.info("dpo: reference log-probs read from %s", path)
    start = 0
    for data in datasets:
        data.reference = values[start: start + len(data.tokens)]
        start += len(data.tokens)


def _read(path: Path, key: str) -> np.ndarray | None:
    try:
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return stored["logps"]
    except (OSError, KeyError, ValueError):
        pass
    return None


def _write(path: Path, key: str, values: np.ndarray) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.asarray(key), logps=values)
    os.replace(tmp, path)
    info = path.parent / "reference.json"  # for people: what the cache holds
    info.with_suffix(".tmp").write_text(json.dumps({"key": key, "pairs": len(values)}) + "\n")
    os.replace(info.with_suffix(".tmp"), info)
