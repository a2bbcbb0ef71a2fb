"""Saving a trained tokenizer as a Hugging Face folder that `AutoTokenizer.from_pretrained` loads.

The folder holds tokenizer.json (both backends), tokenizer_config.json with the special tokens and the
chat template, and for SentencePiece also the original `tokenizer.model`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

# ChatML-style turns. `{% generation %}` marks assistant text, so fine-tuning can ask transformers for
# an assistant-token mask (`return_assistant_tokens_mask=True`) and put the loss only there.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def special_token_list(special: Any) -> list[str]:
    """Special tokens in id order: unk, bos, eos, pad, chat markers, extras (duplicates dropped)."""
    ordered = [special.unk, special.bos, special.eos, special.pad, *special.chat, *special.extra]
    return list(dict.fromkeys(t for t in ordered if t))


def chat_template_for(template: str, special: Any) -> str:
    if template:
        return template
    start, end = (list(special.chat) + ["<|im_start|>", "<|im_end|>"])[:2]
    return DEFAULT_CHAT_TEMPLATE.replace("<|im_start|>", start).replace("<|im_end|>", end)


def save_hf_tokenizer(tok: Tokenizer, folder: Path, special: Any, chat_template: str,
                      sp_model: Path | None = None) -> Any:
    """Wrap `tok` in transformers' fast tokenizer class, save it to `folder`, return the wrapper."""
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special.bos, eos_token=special.eos, pad_token=special.pad,
        unk_token=special.unk if sp_model else None,
        additional_special_tokens=[*special.chat, *special.extra],
        clean_up_tokenization_spaces=False, add_prefix_space=False,
    )
    hf.chat_template = chat_template_for(chat_template, special)
    hf.save_pretrained(str(folder))
    if sp_model is not None:
        shutil.copyfile(sp_model, folder / "tokenizer.model")
    return hf


def special_ids(folder: Path) -> dict[str, int | None]:
    """bos/eos/pad ids of a saved folder, read from its files (cheap: no transformers import)."""
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    ids: dict[str, int | None] = {}
    for name in ("bos", "eos", "pad"):
        value = config.get(f"{name}_token")
        if isinstance(value, dict):
            value = value.get("content")
        ids[f"{name}_id"] = tok.token_to_id(value) if value else None
    return ids


def vocab_length(tok: Tokenizer) -> int:
    """Ids in use, added tokens included: one more than the largest id."""
    vocab = tok.get_vocab(with_added_tokens=True)
    return max(vocab.values()) + 1 if vocab else 0
