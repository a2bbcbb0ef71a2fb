"""Readers for chat data in its usual shapes (Alpaca, ShareGPT, role/content messages) from JSON or JSONL.

Every reader yields conversations as lists of {"role": system|user|assistant, "content": str}.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
Conversation = list[dict[str, str]]

# ShareGPT speaker names (and common variants) -> roles.
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
DEFAULT_FIELDS = {
    "instruction": "instruction", "input": "input", "output": "output", "system": "system", "history": "history",
    "instances": "instances", "conversations": "conversations", "messages": "messages",
    "role": "role", "content": "content", "from": "from", "value": "value",
}


def expand_paths(patterns: list[str], name: str) -> list[Path]:
    """Files matching the dataset's globs, sorted; an error names the dataset when nothing matches."""
    files = sorted({Path(p) for pattern in patterns for p in glob.glob(str(pattern), recursive=True)})
    files = [f for f in files if f.is_file()]
    if not files:
        raise InputError(f"sft.datasets '{name}': no files match {list(patterns)}; fix its paths")
    return files


def read_records(path: Path, name: str = "") -> Iterator[dict]:
    """Records of a JSON file (a list, or an object holding one list) or of a JSONL file (one per line); a file
    that is not UTF-8 text is an InputError naming the dataset, the file and the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        where = f"sft.datasets '{name}': " if name else ""
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{where}{path}:{line}: not UTF-8 text (byte {err.start}); save the dataset as UTF-8, "
                         "or remove the file from its paths") from None
    if path.suffix == ".json" or text.lstrip()[:1] == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from err
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        yield from (r for r in data if isinstance(r, dict))
        return
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            yield record
    if bad:
        log.warning("%s: skipped %d lines that are not JSON", path, bad)


def alpaca(record: dict, f: dict[str, str]) -> Iterator[Conversation]:
    """instruction (+ input) -> output; `history` pairs become earlier turns; `instances` lists expand."""
    instruction = str(record.get(f["instruction"]) or "").strip()
    instances = record.get(f["instances"])
    if f["output"] not in record and isinstance(instances, list):
        pairs = [(i.get(f["input"], ""), i.get(f["output"], "")) for i in instances if isinstance(i, dict)]
    else:
        pairs = [(record.get(f["input"], ""), record.get(f["output"], ""))]
    turns: Conversation = []
    if record.get(f["system"]):
        turns.append({"role": "system", "content": str(record[f["system"]])})
    for old in record.get(f["history"]) or []:
        if isinstance(old, (list, tuple)) and len(old) == 2:
            turns += [{"role": "user", "content": str(old[0])}, {"role": "assistant", "content": str(old[1])}]
    for given, output in pairs:
        given, output = str(given or "").strip(), str(output or "").strip()
        prompt = f"{instruction}\n\n{given}" if given else instruction
        if prompt and output:
            yield [*turns, {"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def sharegpt(record: dict, f: dict[str, str]) -> Iterator[Conversation]:
    turns = record.get(f["conversations"]) or []
    out: Conversation = []
    if record.get(f["system"]):
        out.append({"role": "system", "content": str(record[f["system"]])})
    for turn in turns:
        role = SHAREGPT_ROLES.get(str(turn.get(f["from"], "")).lower())
        if role is None:
            return  # an unknown speaker (tool calls, observations): not a plain chat
        out.append({"role": role, "content": str(turn.get(f["value"]) or "")})
    yield out


def messages(record: dict, f: dict[str, str]) -> Iterator[Conversation]:
    out: Conversation = []
    for turn in record.get(f["messages"]) or []:
        role = str(turn.get(f["role"], "")).lower()
        role = SHAREGPT_ROLES.get(role, role)
        out.append({"role": role, "content": str(turn.get(f["content"]) or "")})
    yield out


READERS: dict[str, Callable[[dict, dict[str, str]], Iterator[Conversation]]] = {
    "alpaca": alpaca, "sharegpt": sharegpt, "messages": messages,
}


def valid(conv: Conversation) -> bool:
    """system? then user/assistant turns alternating, starting with user and ending with assistant."""
    body = conv[1:] if conv and conv[0]["role"] == "system" else conv
    if len(body) < 2 or len(body) % 2:
        return False
    expected = ["user", "assistant"] * (len(body) // 2)
    return [t["role"] for t in body] == expected and all(t["content"].strip() for t in body)


def load_conversations(spec: Any, default_system: str = "") -> list[Conversation]:
    """All usable conversations of one sft.datasets entry, normalised to role/content messages."""
    if spec.format not in READERS:
        raise ConfigError(f"sft.datasets '{spec.name}': format '{spec.format}' is not one of {sorted(READERS)}")
    unknown = sorted(set(spec.fields) - set(DEFAULT_FIELDS))
    if unknown:
        raise ConfigError(f"sft.datasets '{spec.name}': fields {unknown} are not known; use {sorted(DEFAULT_FIELDS)}")
    fields = {**DEFAULT_FIELDS, **dict(spec.fields)}
    system = spec.system_prompt or default_system
    reader = READERS[spec.format]
    out: list[Conversation] = []
    skipped = 0
    for path in expand_paths(list(spec.paths), spec.name):
        for record in read_records(path, spec.name):
            for conv in reader(record, fields):
                if system and conv and conv[0]["role"] != "system":
                    conv = [{"role": "system", "content": system}, *conv]
                if valid(conv):
                    out.append(conv)
                else:
                    skipped += 1
                if spec.max_samples and len(out) >= spec.max_samples:
                    return out
    if skipped:
        log.warning("sft dataset %s: skipped %d conversations that are not user/assistant turns", spec.name, skipped)
    if not out:
        raise InputError(f"sft.datasets '{spec.name}': no usable {spec.format} conversations in {list(spec.paths)}; "
                         "check its format and fields")
    return out
