"""Document masking: a document packed after another gives the same logits as the document alone."""

from __future__ import annotations

import torch
from triglot.train.model import build_model

from triglot.config import compose


def _model(attention: str):
    cfg = compose({"defaults": {"hardware": "cpu"}, "hardware": {"attention": attention},
                   "model": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}})
    return build_model(cfg, vocab_size=97).eval()


def _logits(model, ids, positions):
    with torch.no_grad():
        return model(input_ids=ids[None], position_ids=positions[None], use_cache=False).logits[0]


def test_packed_document_logits_equal_the_document_alone():
    gen = torch.Generator().manual_seed(0)
    first, second = torch.randint(1, 97, (23,), generator=gen), torch.randint(1, 97, (17,), generator=gen)
    packed = torch.cat([first, second])
    restart = torch.cat([torch.arange(23), torch.arange(17)])
    for attention in ("sdpa", "eager"):
        model = _model(attention)
        alone = _logits(model, second, torch.arange(17))
        together = _logits(model, packed, restart)[23:]
        torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
        # Without restarting positions the second document sees the first: the check can fail.
        leaked = _logits(model, packed, torch.arange(40))[23:]
        assert (leaked - alone).abs().max() > 1e-3
