"""Talking to a model: load a checkpoint or Hugging Face folder, apply its chat template, sample replies.

Used by `triglot chat` (interactive, streamed token by token) and `triglot generate` (batches of prompts).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from triglot.train.sft.templates import prepare_tokenizer, stop_token_ids

from triglot.config.sft import GenerationSection
from triglot.errors import InputError


@dataclass
class Chatbot:
    model: Any
    tokenizer: Any
    settings: GenerationSection
    folder: Path | None = None

    @property
    def context(self) -> int:
        """Positions the model was built for: prompt and reply together must fit."""
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    def describe(self) -> str:
        """One line: which model was loaded, its size and context."""
        params = sum(p.numel() for p in self.model.parameters())
        return f"model: {self.folder} ({params / 1e6:.2f}M parameters, context {self.context} tokens)"


def model_folder(path: str | Path) -> Path:
    """An HF folder as given, a checkpoint's hf/ folder, or a run folder: its chat model (sft/export/) when it
    has one, else its pretrained export/."""
    path = Path(path)
    for candidate in (path, path / "hf", path / "sft" / "export", path / "export"):
        if (candidate / "config.json").is_file() or (candidate / "adapter_config.json").is_file():
            return candidate
    raise InputError(f"{path} is not a Hugging Face model folder, a checkpoint with hf/, or a run with "
                     "sft/export/ or export/")


def load_chatbot(path: str | Path, settings: GenerationSection | None = None, template: str = "auto") -> Chatbot:
    """Model (a LoRA adapter folder loads through peft) and tokenizer with a chat template, ready to sample."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_folder(path)
    if not any(folder.glob("tokenizer*")):
        raise InputError(f"{folder} has no tokenizer files; the Hugging Face export must include the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prepare_tokenizer(tokenizer, template)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "left"  # batched generation continues every row from its last token
    model.eval()
    return Chatbot(model, tokenizer, settings or GenerationSection(), folder)


def new_token_budget(bot: Chatbot, prompt_tokens: int) -> int:
    """max_new_tokens, cut so that prompt and reply fit the model's context (positions past it are untrained)."""
    wanted = int(bot.settings.max_new_tokens)
    if not bot.context:
        return wanted
    room = bot.context - prompt_tokens
    if room < 1:
        raise InputError(f"the prompt is {prompt_tokens} tokens and fills the model's context of {bot.context}: "
                         "shorten it (in chat: /reset clears the conversation)")
    return min(wanted, room)


def generation_kwargs(bot: Chatbot, prompt_tokens: int = 0) -> dict:
    s = bot.settings
    sample = s.temperature > 0
    kwargs = {"max_new_tokens": new_token_budget(bot, prompt_tokens), "do_sample": sample,
              "eos_token_id": stop_token_ids(bot.tokenizer), "pad_token_id": bot.tokenizer.pad_token_id,
              "repetition_penalty": float(s.repetition_penalty)}
    if sample:
        kwargs |= {"temperature": float(s.temperature), "top_p": float(s.top_p), "top_k": int(s.top_k)}
    else:
        kwargs |= {"temperature": None, "top_p": None, "top_k": None}
    return kwargs


def _encode(bot: Chatbot, conversations: list[list[dict]]) -> Any:
    texts = [bot.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return bot.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")


def reply(bot: Chatbot, messages: list[dict], out: IO[str] | None = None) -> str:
    """The assistant's next turn; with `out`, each piece of text is written there as soon as it decodes."""
    import torch
    from transformers import TextStreamer

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if out is not None:
                out.write(text)
                out.flush()

    enc = _encode(bot, [messages])
    streamer = _Streamer(bot.tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.no_grad():
        ids = bot.model.generate(**enc, streamer=streamer, **generation_kwargs(bot, enc["input_ids"].shape[1]))
    return bot.tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def generate_batch(bot: Chatbot, conversations: list[list[dict]]) -> list[str]:
    import torch

    enc = _encode(bot, conversations)
    with torch.no_grad():
        ids = bot.model.generate(**enc, **generation_kwargs(bot, enc["input_ids"].shape[1]))
    new = ids[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in bot.tokenizer.batch_decode(new, skip_special_tokens=True)]


def read_prompts(path: Path, system: str = "") -> list[list[dict]]:
    """Prompts from a text file (one per line) or JSONL ({"prompt": ...} or {"messages": [...]}); a file that is
    missing, not UTF-8 or has a line that is not a prompt is an InputError naming it (and the line)."""
    if path.is_dir():
        raise InputError(f"--prompts: {path} is a directory; give a text file (one prompt a line) or JSONL")
    if not path.is_file():
        raise InputError(f"--prompts: {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"--prompts: {path}:{line}: not UTF-8 text (byte {err.start}); save the prompts as "
                         "UTF-8") from None
    convs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        messages = _jsonl_prompt(path, n, line) if path.suffix == ".jsonl" else [{"role": "user", "content": line.strip()}]
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
        convs.append(messages)
    if not convs:
        raise InputError(f"--prompts: {path} has no prompts")
    return convs


def _jsonl_prompt(path: Path, n: int, line: str) -> list[dict]:
    """The messages of one JSONL line: {"prompt": text} or {"messages": [{"role": .., "content": ..}, ...]}."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{n}: not JSON ({err})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}:{n}: expected an object with 'prompt' or 'messages', got {type(record).__name__}")
    if not record.get("messages"):
        return [{"role": "user", "content": str(record.get("prompt", ""))}]
    messages = record["messages"]
    if not (isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                               and isinstance(m.get("content"), str) for m in messages)):
        raise InputError(f"{path}:{n}: 'messages' must be a list of {{\"role\": ..., \"content\": ...}} objects")
    return messages


def chat_loop(bot: Chatbot, system: str = "", stdin: IO[str] = sys.stdin, out: IO[str] = sys.stdout) -> None:
    """Read a line, stream the answer, repeat. /reset clears the history, /exit (or end of input) leaves."""
    import torch

    torch.manual_seed(int(bot.settings.seed))
    history = [{"role": "system", "content": system}] if system else []
    out.write("Chat with the model. /reset clears the conversation, /exit leaves.\n")
    while True:
        out.write(">>> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            out.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": text})
        try:
            answer = reply(bot, history, out)
        except InputError as err:  # the conversation outgrew the context: say so and keep the chat open
            history.pop()
            out.write(f"{err}\n")
            continue
        out.write("\n")
        history.append({"role": "assistant", "content": answer})


def settings_record(bot: Chatbot) -> dict:
    return asdict(bot.settings)
