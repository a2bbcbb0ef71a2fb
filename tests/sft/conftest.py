"""Tiny Hugging Face model and tokenizer folders built offline from the real SFT text, for fine-tuning tests.

The tokenizer is a byte-level BPE trained here with `tokenizers`; it has no chat template of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SFT = "corpora/sft"


def sample_text(shared_data: Path, limit: int = 600) -> list[str]:
    """English, Chinese and Cantonese lines from the shared SFT files."""
    records = json.loads((shared_data / SFT / "sft_alpaca_bilingual_en_zh/alpaca_chinese_part_0.json").read_text())
    lines = []
    for r in records[:limit]:
        lines += [r["en_instruction"], r["en_output"], r["zh_instruction"], r["zh_output"]]
    for line in (shared_data / SFT / "yue_alpaca_seed/regen.jsonl").read_text().splitlines()[:limit]:
        r = json.loads(line)
        lines += [r["instruction"], r["output"]]
    return lines


def build_tokenizer(shared_data: Path, out: Path, vocab_size: int = 1200) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sample_text(shared_data), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)
    return out


def build_model(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(shared_data, tmp_path_factory.mktemp("sft_tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tiny_tokenizer_dir, tmp_path_factory.mktemp("sft_model"))


@pytest.fixture()
def tokenizer(tiny_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
