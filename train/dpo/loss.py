"""Preference losses on packed rows: per-sequence log-probs of the answers, then DPO (sigmoid), IPO or SimPO per pair.

Losses come back per pair, unreduced: the trainer sums them and divides by the global number of pairs in the step.
"""

from __future__ import annotations

from typing import Any

from triglot.errors import ConfigError

LOSSES = ("sigmoid", "ipo", "simpo")
REFERENCE_FREE = ("simpo",)


def sequence_logps(model: Any, batch: dict, device: Any) -> tuple[Any, Any]:
    """Summed log-probs of each sequence's answer tokens and their counts, [2 * pairs] each (chosen at 2k)."""
    import torch
    import torch.nn.functional as F

    input_ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
    # Positions restart per answer and no attention mask is passed: transformers masks attention per document.
    out = model(input_ids=input_ids, position_ids=batch["position_ids"].to(device), use_cache=False)
    logits = out.logits.float()
    token_logps = -F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100,
                                   reduction="none")
    segments = batch["segments"].to(device).view(-1)
    keep = (labels.view(-1) != -100) & (segments >= 0)
    n = 2 * int(batch["pairs"])
    sums = torch.zeros(n, dtype=token_logps.dtype, device=device).index_add(0, segments[keep], token_logps[keep])
    counts = torch.zeros(n, dtype=token_logps.dtype, device=device).index_add(0, segments[keep],
                                                                              torch.ones_like(token_logps[keep]))
    return sums, counts


def preference_loss(dpo: Any, logps: Any, counts: Any, reference: Any) -> tuple[Any, Any, Any]:
    """(loss, chosen reward, rejected reward) per pair from the policy's and the reference's summed log-probs."""
    import torch.nn.functional as F

    beta, eps = float(dpo.beta), float(dpo.label_smoothing)
    chosen, rejected = logps[0::2], logps[1::2]
    ref_chosen, ref_rejected = reference[:, 0].to(logps), reference[:, 1].to(logps)
    if dpo.loss == "sigmoid":
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        logits = beta * (chosen_ratio - rejected_ratio)
        loss = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    elif dpo.loss == "ipo":  # on log-probs averaged over the answer's tokens (as in the IPO paper and TRL)
        chosen_ratio = (chosen - ref_chosen) / counts[0::2]
        rejected_ratio = (rejected - ref_rejected) / counts[1::2]
        loss = (chosen_ratio - rejected_ratio - 1 / (2 * beta)) ** 2
    elif dpo.loss == "simpo":  # reference-free: length-averaged log-probs, target margin simpo_gamma
        chosen_ratio, rejected_ratio = chosen / counts[0::2], rejected / counts[1::2]
        logits = beta * (chosen_ratio - rejected_ratio) - float(dpo.simpo_gamma)
        loss = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    else:
        raise ConfigError(f"dpo.loss '{dpo.loss}' is not one of {list(LOSSES)}")
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def check_dpo_section(dpo: Any, lora_enabled: bool) -> None:
    """Settings that cannot work are refused before any model is built."""
    if dpo.loss not in LOSSES:
        raise ConfigError(f"dpo.loss '{dpo.loss}' is not one of {list(LOSSES)}")
    if dpo.reference not in ("precomputed", "live"):
        raise ConfigError(f"dpo.reference must be 'precomputed' or 'live', got '{dpo.reference}'")
    if dpo.reference == "live" and not lora_enabled:
        raise ConfigError("dpo.reference=live needs dpo.lora.enabled=true (the base with adapters disabled is the "
                          "reference); use dpo.reference=precomputed for full fine-tuning")
    if not 0 <= float(dpo.label_smoothing) < 0.5:
        raise ConfigError(f"dpo.label_smoothing = {dpo.label_smoothing}: use a value in [0, 0.5)")
    if not float(dpo.beta) > 0:
        raise ConfigError(f"dpo.beta = {dpo.beta}: use a value above 0")
