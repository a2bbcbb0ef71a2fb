"""Model section: Llama-family shapes built through transformers, or a local pretrained folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelSection:
    name: str = "tiny"
    # transformers architecture family; Llama-family shapes are the supported ones.
    arch: str = "llama"
    # 0 means "take it from the tokenizer".
    vocab_size: int = 0
    hidden_size: int = 64
    intermediate_size: int = 176
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    initializer_range: float = 0.02
    # Local Hugging Face folder to start from instead of a fresh init.
    pretrained: Optional[str] = None
    # Tokenizer folder (vocabulary size, export); empty: the packed data's tokenizer, else <run.dir>/tokenizer.
    tokenizer: str = ""
