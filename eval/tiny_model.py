"""A small random Llama with a byte-level BPE tokenizer trained on real benchmark text, saved as an HF folder.

Tests and bench/bench_eval.py score it; nothing is downloaded.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def benchmark_text(benchmarks_dir: str | Path) -> list[str]:
    """Questions and options from the dev splits of the real suites (English, Chinese, Cantonese)."""
    root = Path(benchmarks_dir)
    files = sorted(root.glob("*/dev/*.csv")) + sorted(root.glob("cmmlu/data/dev/*.csv"))
    files += sorted(root.glob("hkcanto_eval/data/*/dev/*.csv"))
    texts = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            texts += [" ".join(row) for row in csv.reader(fh)]
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = 1024) -> Any:
    """Byte-level BPE with BOS/EOS/PAD, wrapped for transformers (BOS added to every encoding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_model(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4, max_len: int = 1024,
                seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_len, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    # Random init at 0.02 gives near-uniform predictions; a larger scale makes choices differ.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return model.eval()


def save_tiny_model(folder: str | Path, benchmarks_dir: str | Path, vocab_size: int = 1024, **model_kw: Any) -> Path:
    """Tokenizer and model saved together as a Hugging Face folder."""
    folder = Path(folder)
    tokenizer = build_tokenizer(benchmark_text(benchmarks_dir), vocab_size)
    model = build_model(len(tokenizer), **model_kw)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
