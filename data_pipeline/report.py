"""report.json and report.md of the clean stage: in and out by source, language and filter, PII counts,
unreadable records with file and place, and a few removed examples per filter.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from triglot.data_pipeline.stats import CleanStats

log = logging.getLogger(__name__)
# The setting behind each removal reason, named in the warning when one reason takes most of a source.
SETTING = {
    "too_short": "filters.min_chars", "too_long": "filters.max_chars",
    "symbol_ratio": "filters.max_symbol_ratio", "digit_ratio": "filters.max_digit_ratio",
    "dup_lines": "filters.max_dup_line_fraction", "dup_line_chars": "filters.max_dup_line_char_fraction",
    "dup_paragraphs": "filters.max_dup_para_fraction", "terminal_punct": "filters.min_terminal_punct_lines",
    "boilerplate": "filters.max_boilerplate_lines", "alpha_words": "filters.min_alpha_word_ratio",
}
WARN_SHARE = 0.5


def _setting(reason: str) -> str:
    if reason.startswith("top_"):
        return "filters.max_top_ngram_share"
    if reason.startswith("language_"):
        return "data.keep_languages (or the source's `language` hint)"
    if reason.startswith("dedup_"):
        return "data.dedup"
    return SETTING.get(reason, reason)


def filter_warnings(by_source: dict[str, dict]) -> list[str]:
    """One line per source where a single reason removed more than half of its documents."""
    lines = []
    for name, entry in by_source.items():
        docs = entry["docs_in"] - entry["unreadable"]
        for reason, count in sorted(entry["removed"].items(), key=lambda x: -x[1]):
            if docs and count > WARN_SHARE * docs and reason != "empty":
                setting = _setting(reason)
                fix = (f"set `kind: sentences` or `{setting.replace('filters.', 'filters: {')}: ...}}` on the source"
                       if setting.startswith("filters.") else f"check {setting}")
                lines.append(f"source {name}: `{reason}` removed {count} of {docs} documents ({count / docs:.0%}); "
                             f"{fix}, or list the filter in data.disabled_filters")
    return lines


def unreadable_warnings(by_source: dict[str, dict], reasons: dict[str, dict[str, int]]) -> list[str]:
    """One line per source where most records could not be read: usually a setting, not the data."""
    lines = []
    for name, entry in by_source.items():
        bad, total = entry["unreadable"], entry["docs_in"]
        if total and bad > WARN_SHARE * total:
            top = ", ".join(f"{reason} {count}" for reason, count in
                            sorted(reasons.get(name, {}).items(), key=lambda x: -x[1])[:3])
            hint = ("check its text_field (or text_fields)" if "missing_field" in reasons.get(name, {})
                    else "check its format and files")
            lines.append(f"source {name}: {bad} of {total} records could not be read ({top}); {hint}")
    return lines


def build_report(stats: CleanStats, kept: dict, seconds: float, workers: int) -> dict[str, Any]:
    removed_docs = sum(v["docs"] for v in stats.removed.values())
    unreadable = sum(stats.unreadable.values())
    by_source = {}
    for name, entry in stats.by_source.items():
        out = kept["by_source"].get(name, {"docs": 0, "chars": 0})
        by_source[name] = {**entry, "docs_out": out["docs"], "chars_out": out["chars"],
                           "removed": dict(stats.removed_by_source.get(name, {}))}
    by_language = {}
    for name in sorted(set(stats.by_language_in) | set(kept["by_language"])):
        seen = stats.by_language_in.get(name, {"docs": 0, "chars": 0})
        out = kept["by_language"].get(name, {"docs": 0, "chars": 0})
        by_language[name] = {"docs_in": seen["docs"], "chars_in": seen["chars"], "docs_out": out["docs"],
                             "chars_out": out["chars"], "removed": dict(stats.removed_by_language.get(name, {}))}
    warnings = unreadable_warnings(by_source, stats.unreadable_by_source) + filter_warnings(by_source)
    for line in warnings:
        log.warning("clean: %s", line)
    return {
        "accounting": {
            "docs_in": stats.docs_in, "kept": kept["docs"], "removed": removed_docs, "unreadable": unreadable,
            "balanced": stats.docs_in == kept["docs"] + removed_docs + unreadable,
        },
        "chars_in": stats.chars_in, "chars_out": kept["chars"],
        "by_source": by_source,
        "by_language": by_language,
        "removed_by_reason": {k: dict(v) for k, v in sorted(stats.removed.items())},
        "unreadable_by_reason": dict(sorted(stats.unreadable.items())),
        "unreadable_by_source": {k: dict(sorted(v.items())) for k, v in sorted(stats.unreadable_by_source.items())},
        "unreadable_records": stats.unreadable_events,
        "pii_replaced": dict(sorted(stats.pii.items())),
        "examples": {k: v for k, v in sorted(stats.examples.items())},
        "source_language": {k: dict(sorted(v.items())) for k, v in sorted(stats.source_language.items())},
        "hinted": {k: stats.hinted.get(k, 0) for k in sorted(stats.by_source)},
        "label_examples": {k: v for k, v in sorted(stats.label_examples.items())},
        "warnings": warnings,
        "seconds": round(seconds, 2), "workers": workers,
    }


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    acc = report["accounting"]
    parts = [
        "# Clean stage report", "",
        f"Documents in {acc['docs_in']:,} = kept {acc['kept']:,} + removed {acc['removed']:,} + unreadable "
        f"{acc['unreadable']:,} ({'balanced' if acc['balanced'] else 'NOT BALANCED'}). "
        f"Characters in {report['chars_in']:,}, out {report['chars_out']:,}. "
        f"{report['seconds']} s with {report['workers']} worker(s).", "",
        "## By source", "",
        _table(["source", "docs in", "docs out", "chars in", "chars out", "unreadable", "removed (top)"],
               [[k, v["docs_in"], v["docs_out"], v["chars_in"], v["chars_out"], v["unreadable"],
                 ", ".join(f"{r} {n}" for r, n in sorted(v["removed"].items(), key=lambda x: -x[1])[:4])]
                for k, v in report["by_source"].items()]), "",
        *(["## Warnings", "", *(f"- {w}" for w in report.get("warnings", [])), ""] if report.get("warnings") else []),
        "## By language (as identified)", "",
        _table(["language", "docs in", "docs out", "chars in", "chars out"],
               [[k, v["docs_in"], v["docs_out"], v["chars_in"], v["chars_out"]] for k, v in report["by_language"].items()]),
        "", "## Source by language (documents as identified, before filters)", "",
        _source_language_table(report), "",
        "## Label examples (with the evidence that decided them)", "",
        *_example_lines(report.get("label_examples", {}), with_language=False),
        "", "## Removed by filter", "",
        _table(["reason", "docs", "chars"], [[k, v["docs"], v["chars"]] for k, v in report["removed_by_reason"].items()]),
        "", "## Unreadable input", "",
        _table(["reason", "records"], [[k, v] for k, v in report["unreadable_by_reason"].items()]), "",
    ]
    for event in report["unreadable_records"][:50]:
        parts.append(f"- `{event['file']}` {event['where']}: {event['reason']}")
    parts += ["", "## PII replaced", "", _table(["type", "count"], [[k, v] for k, v in report["pii_replaced"].items()]),
              "", "## Removed examples", ""]
    parts += _example_lines(report["examples"], with_language=True)
    return "\n".join(parts) + "\n"


def _source_language_table(report: dict[str, Any]) -> str:
    table = report.get("source_language", {})
    languages = sorted({lang for counts in table.values() for lang in counts})
    rows = [[name, *(counts.get(lang, 0) for lang in languages), report.get("hinted", {}).get(name, 0)]
            for name, counts in table.items()]
    return _table(["source", *languages, "took the hint"], rows)


def _example_lines(examples: dict[str, list[dict]], with_language: bool) -> list[str]:
    lines = []
    for name, items in examples.items():
        lines.append(f"### {name}")
        for ex in items:
            snippet = ex["text"][:200].replace("\n", " ").replace("|", "\\|")
            label = f" ({ex['language']})" if with_language else ""
            why = f" — evidence: {ex['evidence']}" if ex.get("evidence") else ""
            lines.append(f"- `{ex['id']}`{label}: {snippet}{why}")
        lines.append("")
    return lines


def write_report(out_dir: Path, report: dict[str, Any]) -> list[Path]:
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return [json_path, md_path]
