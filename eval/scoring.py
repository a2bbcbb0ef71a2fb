"""Log-likelihood scoring: prompts and continuations become token rows, scored in length-sorted batches.

When every continuation of a question is one token, the question is one row scored by one forward
pass (the log-probabilities of all letters are read at the last position).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    key: int  # which continuation (choice index), or which held-out window
    positions: tuple[int, ...]  # where in the row the predicting logits are
    tokens: tuple[int, ...]  # the tokens whose log-probability is summed


@dataclass(frozen=True)
class Row:
    owner: int  # question (or held-out text) the row belongs to
    input_ids: tuple[int, ...]
    targets: tuple[Target, ...]


def encode_pairs(tokenizer: Any, contexts: Sequence[str], continuations: Sequence[Sequence[str]]
                 ) -> list[tuple[list[int], list[list[int]]]]:
    """Context ids and each continuation's ids, split where the joint tokenization allows.

    The continuation's tokens are those the context+continuation tokenization adds after the
    context's own tokens; where the context's tokens are not a prefix of it (a merge across the
    boundary), the continuation is tokenized alone.
    """
    if not contexts:
        return []  # only generation tasks: nothing to score by log-likelihood
    ctx_ids = tokenizer(list(contexts)).input_ids
    joint = [ctx + cont for ctx, conts in zip(contexts, continuations, strict=True) for cont in conts]
    joint_ids = iter(tokenizer(joint).input_ids if joint else [])
    out = []
    for ctx, conts in zip(ctx_ids, continuations, strict=True):
        cont_ids = []
        for cont in conts:
            whole = next(joint_ids)
            if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
                cont_ids.append(whole[len(ctx):])
            else:
                cont_ids.append(tokenizer(cont, add_special_tokens=False).input_ids)
        out.append((ctx, cont_ids))
    return out


def _truncate(ids: list[int], targets: list[Target], max_length: int) -> tuple[list[int], list[Target]]:
    """Drop tokens from the left so the row fits; targets move with them."""
    cut = len(ids) - max_length
    if cut <= 0:
        return ids, targets
    moved = [Target(t.key, tuple(p - cut for p in t.positions), t.tokens) for t in targets]
    if any(p < 0 for t in moved for p in t.positions):
        raise ValueError(f"continuation longer than eval.max_length={max_length}")
    return ids[cut:], moved


def question_rows(owner: int, ctx: list[int], conts: list[list[int]], max_length: int) -> list[Row]:
    """One row when every continuation is a single token, else one row per continuation."""
    if all(len(c) == 1 for c in conts):
        targets = [Target(i, (len(ctx) - 1,), (c[0],)) for i, c in enumerate(conts)]
        ids, targets = _truncate(list(ctx), targets, max_length)
        return [Row(owner, tuple(ids), tuple(targets))]
    rows = []
    for i, cont in enumerate(conts):
        seq = ctx + cont
        target = Target(i, tuple(range(len(ctx) - 1, len(seq) - 1)), tuple(cont))
        ids, targets = _truncate(seq[:-1], [target], max_length)
        rows.append(Row(owner, tuple(ids), tuple(targets)))
    return rows


def shard_rows(rows: list[Row], rank: int, world_size: int) -> list[tuple[int, Row]]:
    """Sort by length (longest first, a stable global order) and deal rows to ranks in turn."""
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i].input_ids), i))
    return [(i, rows[i]) for i in order[rank::world_size]]


def _direct_head(model: Any) -> bool:
    """True when logits are exactly lm_head(last hidden state), so only needed positions are computed."""
    cfg = model.config
    scaled = getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None)
    return not scaled and hasattr(model, "get_decoder") and model.get_output_embeddings() is not None


class Progress:
    """A log line at most every `every_s` seconds, from rank 0 only, while a long loop runs."""

    def __init__(self, total: int, what: str, every_s: float = 10.0):
        self.total, self.what, self.every_s = total, what, every_s
        self.started = self.last = time.monotonic()
        self.quiet = int(os.environ.get("RANK", "0")) != 0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < self.every_s or not done:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        log.info("%d/%d %s (%.0f/s, about %.0f s left)", done, self.total, self.what, rate,
                 (self.total - done) / max(rate, 1e-9))


def score_rows(model: Any, rows: Sequence[tuple[int, Row]], batch_size: int, pad_id: int
               ) -> list[tuple[int, int, float, int]]:
    """(row id, target key, summed log-likelihood, token count) for every target of every row."""
    import torch

    device = next(model.parameters()).device
    direct = _direct_head(model)
    results = []
    progress = Progress(len(rows), "rows scored")
    for start in range(0, len(rows), batch_size):
        progress.update(start)
        batch = rows[start:start + batch_size]
        width = max(len(row.input_ids) for _, row in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (_, row) in enumerate(batch):
            ids[b, : len(row.input_ids)] = torch.tensor(row.input_ids)
            mask[b, : len(row.input_ids)] = 1
        b_idx, p_idx, tok = [], [], []
        for b, (_, row) in enumerate(batch):
            for t in row.targets:
                b_idx += [b] * len(t.positions)
                p_idx += t.positions
                tok += t.tokens
        with torch.no_grad():
            ids, mask = ids.to(device), mask.to(device)
            if direct:
                hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
                logits = model.get_output_embeddings()(hidden[b_idx, p_idx])
            else:
                logits = model(input_ids=ids, attention_mask=mask).logits[b_idx, p_idx]
            logp = torch.log_softmax(logits.float(), dim=-1)
            token_ll = logp[torch.arange(len(tok), device=device), torch.tensor(tok, device=device)].cpu().tolist()
        k = 0
        for row_id, row in batch:
            for t in row.targets:
                n = len(t.tokens)
                results.append((row_id, t.key, float(sum(token_ll[k:k + n])), n))
                k += n
    return results
