"""Counters of the clean stage: documents and characters in and out by source, language and reason.

Workers fill one per work unit; the merge step adds them up and adds the dedup reasons.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

MAX_EVENTS = 200  # unreadable records listed per unit (all are counted)


def _pair() -> dict[str, int]:
    return {"docs": 0, "chars": 0}


class CleanStats:
    """Plain nested dicts so that a unit's stats round-trip through JSON."""

    def __init__(self, examples_per_reason: int = 3):
        self.examples_per_reason = examples_per_reason
        self.docs_in = 0
        self.chars_in = 0
        self.by_source: dict[str, dict[str, int]] = defaultdict(lambda: {"docs_in": 0, "chars_in": 0, "unreadable": 0})
        self.by_language_in: dict[str, dict[str, int]] = defaultdict(_pair)
        self.removed: dict[str, dict[str, int]] = defaultdict(_pair)
        self.removed_by_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.removed_by_language: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.unreadable: dict[str, int] = defaultdict(int)
        self.unreadable_by_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.unreadable_events: list[dict[str, str]] = []
        self.pii: dict[str, int] = defaultdict(int)
        self.examples: dict[str, list[dict[str, str]]] = defaultdict(list)
        # Documents by source and identified language (before filters), those whose label came from the
        # source's hint, and a few documents per language with the evidence that decided their label.
        self.source_language: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.hinted: dict[str, int] = defaultdict(int)
        self.label_examples: dict[str, list[dict[str, str]]] = defaultdict(list)

    def read(self, source: str, chars: int) -> None:
        self.docs_in += 1
        self.chars_in += chars
        self.by_source[source]["docs_in"] += 1
        self.by_source[source]["chars_in"] += chars

    def bad_record(self, source: str, file: str, locator: str, reason: str) -> None:
        self.read(source, 0)
        self.by_source[source]["unreadable"] += 1
        self.unreadable[reason] += 1
        self.unreadable_by_source[source][reason] += 1
        if len(self.unreadable_events) < MAX_EVENTS:
            self.unreadable_events.append({"source": source, "file": file, "where": locator, "reason": reason})

    def language_in(self, language: str, chars: int, source: str = "", hinted: bool = False) -> None:
        self.by_language_in[language]["docs"] += 1
        self.by_language_in[language]["chars"] += chars
        if source:
            self.source_language[source][language] += 1
            if hinted:
                self.hinted[source] += 1

    def wants_example(self, reason: str) -> bool:
        """Whether a removal under `reason` would still be kept as an example (evidence costs a lookup)."""
        return len(self.examples[reason]) < self.examples_per_reason

    def label_example(self, language: str, doc_id: str, text: str, evidence: str) -> None:
        if len(self.label_examples[language]) < self.examples_per_reason:
            self.label_examples[language].append({"id": doc_id, "text": text[:200], "evidence": evidence})

    def remove(self, reason: str, source: str, language: str, doc_id: str, text: str, evidence: str = "") -> None:
        self.removed[reason]["docs"] += 1
        self.removed[reason]["chars"] += len(text)
        self.removed_by_source[source][reason] += 1
        self.removed_by_language[language][reason] += 1
        if len(self.examples[reason]) < self.examples_per_reason:
            self.examples[reason].append({"id": doc_id, "language": language, "text": text[:300],
                                          "evidence": evidence})

    def to_dict(self) -> dict[str, Any]:
        return {
            "docs_in": self.docs_in, "chars_in": self.chars_in,
            "by_source": {k: dict(v) for k, v in self.by_source.items()},
            "by_language_in": {k: dict(v) for k, v in self.by_language_in.items()},
            "removed": {k: dict(v) for k, v in self.removed.items()},
            "removed_by_source": {k: dict(v) for k, v in self.removed_by_source.items()},
            "removed_by_language": {k: dict(v) for k, v in self.removed_by_language.items()},
            "unreadable": dict(self.unreadable),
            "unreadable_by_source": {k: dict(v) for k, v in self.unreadable_by_source.items()},
            "unreadable_events": self.unreadable_events,
            "pii": dict(self.pii),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "source_language": {k: dict(v) for k, v in self.source_language.items()},
            "hinted": dict(self.hinted),
            "label_examples": {k: list(v) for k, v in self.label_examples.items()},
        }

    def add(self, other: dict[str, Any]) -> None:
        """Add a unit's `to_dict()` into this one."""
        self.docs_in += other["docs_in"]
        self.chars_in += other["chars_in"]
        for key in ("by_source", "by_language_in", "removed"):
            target = getattr(self, key)
            for name, counts in other[key].items():
                for field, value in counts.items():
                    target[name][field] = target[name].get(field, 0) + value
        for key in ("removed_by_source", "removed_by_language"):
            target = getattr(self, key)
            for name, counts in other[key].items():
                for reason, value in counts.items():
                    target[name][reason] += value
        for reason, value in other["unreadable"].items():
            self.unreadable[reason] += value
        for name, counts in other.get("unreadable_by_source", {}).items():  # absent in older unit files
            for reason, value in counts.items():
                self.unreadable_by_source[name][reason] += value
        room = MAX_EVENTS * 5 - len(self.unreadable_events)
        self.unreadable_events.extend(other["unreadable_events"][:max(room, 0)])
        for kind, value in other["pii"].items():
            self.pii[kind] += value
        for key in ("examples", "label_examples"):
            for name, examples in other.get(key, {}).items():
                have = getattr(self, key)[name]
                have.extend(examples[: max(self.examples_per_reason - len(have), 0)])
        for name, counts in other.get("source_language", {}).items():
            for language, value in counts.items():
                self.source_language[name][language] += value
        for name, value in other.get("hinted", {}).items():
            self.hinted[name] += value
