"""Chat templates (the tokenizer's own, or built-in ChatML, Llama 3, Qwen) and assistant-only loss masks.

Assistant spans are found by rendering prefixes of the conversation, so any template works, with or
without `{% generation %}` markers; the built-in templates carry the markers too.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from triglot.errors import ConfigError

log = logging.getLogger(__name__)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5: ChatML with a default system prompt.
QWEN = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}" + CHATML
)
LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
BUILTIN = {
    "chatml": (CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "qwen": (QWEN, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "llama3": (LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
}
TEMPLATES = ("auto", "tokenizer", *BUILTIN)
# End-of-turn tokens generation stops at, beside the tokenizer's eos.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")


def prepare_tokenizer(tokenizer: Any, template: str = "auto") -> Any:
    """Set the chat template `template` names on the tokenizer, adding its special tokens when missing.

    `auto` keeps the tokenizer's own template and falls back to ChatML. Returns the same tokenizer;
    its length may grow (the model's embeddings must then be resized to len(tokenizer)).
    """
    if template not in TEMPLATES:
        raise ConfigError(f"sft.template '{template}' is not one of {list(TEMPLATES)}")
    if template in ("auto", "tokenizer") and tokenizer.chat_template:
        return tokenizer
    if template == "tokenizer":
        raise ConfigError("sft.template is 'tokenizer' but the tokenizer has no chat template; "
                          f"choose one of {list(BUILTIN)}")
    name = "chatml" if template == "auto" else template
    text, tokens, _ = BUILTIN[name]
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        log.info("added chat tokens %s for the %s template; vocabulary is now %d", missing, name, len(tokenizer))
    tokenizer.chat_template = text
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The eos id plus the template's end-of-turn tokens that the vocabulary has."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    template = tokenizer.chat_template or ""
    ids += [vocab[t] for t in END_OF_TURN if t in vocab and t in template]
    return sorted(set(ids))


def render(tokenizer: Any, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant turn.

    A span runs from the end of the prompt that asks for that turn (rendered with the generation
    prompt) to the end of the turn, trailing whitespace excluded: the answer and its end-of-turn token.
    """
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise ConfigError("the chat template renders a conversation differently from its prefixes, so the "
                              "answer tokens cannot be located; set sft.template to one of "
                              f"{list(BUILTIN)}")
        spans.append((len(prompt), len(upto.rstrip())))
    return full, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the rendered conversation and a boolean mask that is True on assistant tokens."""
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    starts = np.asarray([a for a, _ in enc["offset_mapping"]], dtype=np.int64)
    ends = np.asarray([b for _, b in enc["offset_mapping"]], dtype=np.int64)
    mask = np.zeros(len(ids), dtype=bool)
    for a, b in spans:
        mask |= (starts >= a) & (ends <= b) & (ends > starts)
    return ids, mask
