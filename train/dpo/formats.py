"""Readers for preference pairs: ShareGPT `conversations` + `chosen` / `rejected`, or plain `prompt` / `chosen` /
`rejected`, from JSON or JSONL. Every record is either a usable pair or counted under the reason it was left out.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triglot.train.sft.formats import SHAREGPT_ROLES, expand_paths, valid

from triglot.errors import ConfigError, InputError

log = logging.getLogger(__name__)
Conversation = list[dict[str, str]]
FORMATS = ("sharegpt", "prompt")
DEFAULT_FIELDS = {"conversations": "conversations", "chosen": "chosen", "rejected": "rejected", "prompt": "prompt",
                  "system": "system", "from": "from", "value": "value"}


@dataclass
class Pair:
    prompt: Conversation  # system? then user/assistant turns ending with the user's
    chosen: str
    rejected: str


class BadRecord(ValueError):
    """A record that cannot be a pair; the message is the reason it is counted under."""


def read_json_records(path: Path, bad: Counter) -> Iterator[Any]:
    """Records of a JSON file (a list, or an object holding one list) or of a JSONL file (one per line)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json" or text.lstrip()[:1] == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err}); fix the file or use JSONL") from err
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        yield from data
        return
    for line in text.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                bad["not JSON"] += 1


def _answer(value: Any, f: dict[str, str]) -> str:
    """An answer given as a string, a {from, value} turn, or a list ending with the assistant's turn."""
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        role = SHAREGPT_ROLES.get(str(value.get(f["from"], value.get("role", "gpt"))).lower())
        if role != "assistant":
            raise BadRecord("answer not from the assistant")
        value = value.get(f["value"], value.get("content"))
    if not isinstance(value, str):
        raise BadRecord("missing chosen or rejected")
    return value


def sharegpt_prompt(record: dict, f: dict[str, str]) -> Conversation:
    turns = record.get(f["conversations"])
    if not isinstance(turns, list) or not turns:
        raise BadRecord("missing conversations")
    out: Conversation = []
    if record.get(f["system"]):
        out.append({"role": "system", "content": str(record[f["system"]])})
    for turn in turns:
        role = SHAREGPT_ROLES.get(str(turn.get(f["from"], "")).lower()) if isinstance(turn, dict) else None
        if role is None:
            raise BadRecord("unknown speaker")
        out.append({"role": role, "content": str(turn.get(f["value"]) or "")})
    return out


def plain_prompt(record: dict, f: dict[str, str]) -> Conversation:
    prompt = record.get(f["prompt"])
    if not isinstance(prompt, str):
        raise BadRecord("missing prompt")
    system = [{"role": "system", "content": str(record[f["system"]])}] if record.get(f["system"]) else []
    return [*system, {"role": "user", "content": prompt}]


def to_pair(record: Any, fmt: str, f: dict[str, str], system: str) -> Pair:
    """One record as a Pair, or BadRecord naming why it is not one."""
    if not isinstance(record, dict):
        raise BadRecord("not an object")
    prompt = sharegpt_prompt(record, f) if fmt == "sharegpt" else plain_prompt(record, f)
    if system and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    chosen, rejected = _answer(record.get(f["chosen"]), f).strip(), _answer(record.get(f["rejected"]), f).strip()
    if not valid([*prompt, {"role": "assistant", "content": chosen or "-"}]):
        raise BadRecord("prompt turns not user/assistant ending with the user's")
    if not chosen or not rejected:
        raise BadRecord("empty answer")
    if chosen == rejected:
        raise BadRecord("chosen equals rejected")
    return Pair(prompt, chosen, rejected)


def load_pairs(spec: Any, default_system: str, bad: Counter) -> list[Pair]:
    """The usable pairs of one dpo.datasets entry; the others are counted in `bad` by reason."""
    if spec.format not in FORMATS:
        raise ConfigError(f"dpo.datasets '{spec.name}': format '{spec.format}' is not one of {list(FORMATS)}")
    unknown = sorted(set(spec.fields) - set(DEFAULT_FIELDS))
    if unknown:
        raise ConfigError(f"dpo.datasets '{spec.name}': fields {unknown} are not known; use {sorted(DEFAULT_FIELDS)}")
    fields = {**DEFAULT_FIELDS, **dict(spec.fields)}
    system = spec.system_prompt or default_system
    pairs: list[Pair] = []
    for path in expand_paths(list(spec.paths), spec.name):
        for record in read_json_records(path, bad):
            try:
                pairs.append(to_pair(record, spec.format, fields, system))
            except BadRecord as err:
                bad[str(err)] += 1
            if spec.max_samples and len(pairs) >= spec.max_samples:
                return pairs
    return pairs
