"""report.json and report.md of the clean stage: in and out by source, language and filter, PII counts,
unreadable records with file and place, and a few removed examples per filter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from triglot.data_pipeline.stats import CleanStats


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
        "unreadable_records": stats.unreadable_events,
        "pii_replaced": dict(sorted(stats.pii.items())),
        "examples": {k: v for k, v in sorted(stats.examples.items())},
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
        "## By language (as identified)", "",
        _table(["language", "docs in", "docs out", "chars in", "chars out"],
               [[k, v["docs_in"], v["docs_out"], v["chars_in"], v["chars_out"]] for k, v in report["by_language"].items()]),
        "", "## Removed by filter", "",
        _table(["reason", "docs", "chars"], [[k, v["docs"], v["chars"]] for k, v in report["removed_by_reason"].items()]),
        "", "## Unreadable input", "",
        _table(["reason", "records"], [[k, v] for k, v in report["unreadable_by_reason"].items()]), "",
    ]
    for event in report["unreadable_records"][:50]:
        parts.append(f"- `{event['file']}` {event['where']}: {event['reason']}")
    parts += ["", "## PII replaced", "", _table(["type", "count"], [[k, v] for k, v in report["pii_replaced"].items()]),
              "", "## Removed examples", ""]
    for reason, examples in report["examples"].items():
        parts.append(f"### {reason}")
        for ex in examples:
            snippet = ex["text"][:200].replace("\n", " ").replace("|", "\\|")
            parts.append(f"- `{ex['id']}` ({ex['language']}): {snippet}")
        parts.append("")
    return "\n".join(parts) + "\n"


def write_report(out_dir: Path, report: dict[str, Any]) -> list[Path]:
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return [json_path, md_path]
