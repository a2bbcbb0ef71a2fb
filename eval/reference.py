"""The plain reference scorer: one transformers forward per (prompt, continuation), no batching.

Tests and bench/bench_eval.py check the eval stage against it; it shares no code with eval/scoring.py.
"""

from __future__ import annotations

from typing import Any


def reference_loglikelihood(model: Any, tokenizer: Any, context: str, continuation: str,
                            max_length: int) -> tuple[float, int]:
    """Summed log-probability of `continuation` after `context`, and its token count."""
    import torch

    ctx = tokenizer(context).input_ids
    whole = tokenizer(context + continuation).input_ids
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        cont = whole[len(ctx):]
    else:
        cont = tokenizer(continuation, add_special_tokens=False).input_ids
    ids = (ctx + cont)[-(max_length + 1):]
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]], device=device)).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    n = len(cont)
    picked = logp[len(ids) - 1 - n:, :].gather(1, torch.tensor(ids[-n:], device=device)[:, None])
    return float(picked.sum()), n


def reference_scores(model: Any, tokenizer: Any, samples: list[dict], max_length: int) -> list[list[float]]:
    """Log-likelihood of each continuation of each sample (`prompt`, `continuations` as in samples.jsonl)."""
    return [[reference_loglikelihood(model, tokenizer, s["prompt"], c, max_length)[0] for c in s["continuations"]]
            for s in samples]
