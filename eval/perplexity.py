"""Perplexity and bits per character per language on held-out text files named in eval.heldout.

Text is cut into windows of the model's length, each started with BOS; every text token is scored once.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from triglot.eval.scoring import Row, Target
from triglot.eval.suites import CSV_FIELD_LIMIT, first_bad_utf8

from triglot.errors import InputError


def read_heldout(item: Any) -> str:
    """The text of one eval.heldout entry (.txt whole, .jsonl/.csv joined records); a file that is missing,
    not UTF-8 or not JSON a line is an InputError naming eval.heldout, the file and the line."""
    path = Path(item.path)
    if path.is_dir():
        raise InputError(f"eval.heldout: {path} (language {item.language}) is a directory; give a .txt, .jsonl or "
                         f".csv file")
    if not path.is_file():
        raise InputError(f"eval.heldout: file {path} (language {item.language}) does not exist")
    try:
        texts = _heldout_texts(path, item.field)
    except UnicodeDecodeError:
        line, byte = first_bad_utf8(path)
        raise InputError(f"eval.heldout: {path}:{line}: not UTF-8 text (byte {byte}); save the file as "
                         f"UTF-8") from None
    text = "\n\n".join(t for t in texts if t)
    return text[: item.max_chars] if item.max_chars > 0 else text


def _heldout_texts(path: Path, field: str) -> list[str]:
    if path.suffix == ".jsonl":
        texts = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise InputError(f"eval.heldout: {path}:{n}: not JSON; a .jsonl file holds one JSON object "
                                     f"a line") from None
                if not isinstance(record, dict):
                    raise InputError(f"eval.heldout: {path}:{n}: not a JSON object (with the text under "
                                     f"'{field}')")
                value = record.get(field) or ""
                if not isinstance(value, str):
                    raise InputError(f"eval.heldout: {path}:{n}: '{field}' is not text, got {value!r:.40}")
                texts.append(value)
        return texts
    if path.suffix == ".csv":
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if field not in (reader.fieldnames or []):
                raise InputError(f"eval.heldout: {path} has no column '{field}' (set field to one of "
                                 f"{reader.fieldnames})")
            try:
                return [row[field] or "" for row in reader]
            except csv.Error as err:
                raise InputError(f"eval.heldout: {path}:{reader.line_num}: not readable as CSV ({err})") from None
    return [path.read_text(encoding="utf-8")]


def heldout_rows(tokenizer: Any, heldout: list[Any], max_length: int, first_owner: int
                 ) -> tuple[list[Row], dict[int, dict]]:
    """Rows for every held-out file and, per owner id, its language and character count."""
    rows, owners = [], {}
    bos = tokenizer.bos_token_id
    span = max_length - 1 if bos is not None else max_length
    for k, item in enumerate(heldout):
        owner = first_owner + k
        text = read_heldout(item)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        owners[owner] = {"language": item.language, "path": item.path, "characters": len(text)}
        for w, start in enumerate(range(0, len(ids), span)):
            chunk = ids[start:start + span]
            if bos is not None:
                row_ids, positions, tokens = [bos] + chunk[:-1], range(len(chunk)), chunk
            else:  # without BOS the first token of a window has nothing to predict it
                row_ids, positions, tokens = chunk[:-1], range(len(chunk) - 1), chunk[1:]
            if tokens:
                rows.append(Row(owner, tuple(row_ids), (Target(w, tuple(positions), tuple(tokens)),)))
    return rows, owners


def perplexity_by_language(owners: dict[int, dict], sums: dict[int, tuple[float, int]]) -> dict[str, dict]:
    """Pool files by language: perplexity per token and bits per character."""
    pooled: dict[str, dict] = {}
    for owner, meta in owners.items():
        ll, ntok = sums.get(owner, (0.0, 0))
        p = pooled.setdefault(meta["language"], {"files": [], "characters": 0, "tokens": 0, "nll": 0.0})
        p["files"].append(meta["path"])
        p["characters"] += meta["characters"]
        p["tokens"] += ntok
        p["nll"] -= ll
    for p in pooled.values():
        p["perplexity"] = math.exp(p["nll"] / p["tokens"]) if p["tokens"] else float("nan")
        p["bits_per_character"] = p["nll"] / math.log(2) / p["characters"] if p["characters"] else float("nan")
    return pooled
