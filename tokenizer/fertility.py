"""Fertility: tokens per character, and per word (English) or per Han character (Chinese, Cantonese).

Several tokenizers scored on the same held-out text, side by side, show what a vocabulary choice costs
each language. Written as fertility.json (numbers) and fertility.md (a table).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import Tokenizer

# CJK Unified Ideographs with extensions A to I and the compatibility blocks.
HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U0002f800-\U0002fa1f"
                 "\U00030000-\U000323af]")
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
HAN_LANGUAGES = ("zh-Hans", "zh-Hant", "yue")


def count_units(texts: list[str]) -> dict[str, int]:
    return {
        "chars": sum(len(t) for t in texts),
        "han_chars": sum(len(HAN.findall(t)) for t in texts),
        "words": sum(len(WORD.findall(t)) for t in texts),
    }


def score_language(tok: Tokenizer, language: str, texts: list[str]) -> dict:
    """Token counts and ratios of one tokenizer on one language's texts."""
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)) if texts else 0
    units = count_units(texts)
    # Mixed and other text is measured in whichever unit it mostly consists of.
    han_text = language in HAN_LANGUAGES or (language != "en" and units["han_chars"] >= units["words"])
    unit_name = "han_chars" if han_text else "words"
    per_unit = tokens / units[unit_name] if units[unit_name] else None
    return {"documents": len(texts), "tokens": tokens, **units,
            "tokens_per_char": tokens / units["chars"] if units["chars"] else None,
            "unit": "Han character" if unit_name == "han_chars" else "word",
            "tokens_per_unit": per_unit,
            "tokens_per_word": tokens / units["words"] if units["words"] else None,
            "tokens_per_han_char": tokens / units["han_chars"] if units["han_chars"] else None}


def fertility_report(tokenizers: dict[str, Tokenizer], texts_by_language: dict[str, list[str]]) -> dict:
    """{tokenizer name: {"vocab_size": n, "languages": {language: scores}}}."""
    report = {}
    for name, tok in tokenizers.items():
        report[name] = {
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "languages": {lang: score_language(tok, lang, texts) for lang, texts in sorted(texts_by_language.items())},
        }
    return report


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fertility_markdown(report: dict) -> str:
    """One row per language; per tokenizer the tokens per character and per word / Han character."""
    names = list(report)
    languages = sorted({lang for r in report.values() for lang in r["languages"]})
    header = ["language", "unit", *[f"{n} ({report[n]['vocab_size']}) tok/char" for n in names],
              *[f"{n} tok/unit" for n in names]]
    rows = []
    for lang in languages:
        scores = [report[n]["languages"].get(lang, {}) for n in names]
        unit = next((s["unit"] for s in scores if s), "")
        rows.append([lang, unit, *[_fmt(s.get("tokens_per_char")) for s in scores],
                     *[_fmt(s.get("tokens_per_unit")) for s in scores]])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_fertility(report: dict, folder: Path) -> list[Path]:
    json_path, md_path = folder / "fertility.json", folder / "fertility.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    intro = ("# Fertility\n\nTokens per character, and per word (English and other Latin-script text) or per Han "
             "character (Chinese, Cantonese), on held-out cleaned documents. Lower is cheaper.\n\n")
    md_path.write_text(intro + fertility_markdown(report) + "\n", encoding="utf-8")
    return [json_path, md_path]
