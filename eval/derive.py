"""Suites derived from another suite when they load: `derive: {from: cmmlu, opencc: s2t}` reads the base
suite's files and converts every question, choice, subject name and template text with OpenCC.

The results label such a suite with what it was derived from (results.json `suites.<name>.derived_from`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from triglot.eval.suites import LoadReport, Question, Suite, read_spec, suite_dirs, suite_file

from triglot.errors import ConfigError

OWN_KEYS = ("name", "description", "language", "script", "templates")


class DerivedSuite(Suite):
    def __init__(self, spec: dict, path: Path, benchmarks_dir: str | Path, template: str = "official",
                 dirs: list[str] | tuple[str, ...] = ()):
        derive = spec["derive"]
        if not isinstance(derive, dict) or "from" not in derive or "opencc" not in derive:
            raise ConfigError(f"{path}: derive needs 'from' (a suite name) and 'opencc' (a conversion such as s2t)")
        self.conversion = str(derive["opencc"])
        try:
            import opencc

            self._cc = opencc.OpenCC(self.conversion)
        except Exception as err:  # the package raises plain errors for an unknown conversion name
            raise ConfigError(f"{path}: derive.opencc: '{self.conversion}' is not an OpenCC conversion ({err})") from None
        base_path = suite_file(str(derive["from"]), suite_dirs(dirs))
        base = read_spec(base_path)
        if base.get("derive") or base.get("kind") == "generation":
            raise ConfigError(f"{path}: derive.from: '{derive['from']}' must be a plain multiple-choice suite")
        merged = {k: v for k, v in base.items() if k != "default"}
        merged |= {k: spec[k] for k in OWN_KEYS if k in spec}
        if "templates" not in spec:
            merged["templates"] = {name: self._convert_template(t) for name, t in base["templates"].items()}
        self.derived_from = f"{base['name']} ({base_path}), converted by OpenCC {self.conversion}"
        super().__init__(merged, path, benchmarks_dir, template)

    def _convert_template(self, template: Any) -> Any:
        if not isinstance(template, dict):
            return template
        return {k: (f"{v}; converted by OpenCC {self.conversion}" if k == "source" else
                    self._cc.convert(v) if isinstance(v, str) else v) for k, v in template.items()}

    @cached_property
    def _converted_names(self) -> dict[str, str]:
        return {}

    def subject_name(self, subject: str) -> str:
        if subject not in self._converted_names:
            self._converted_names[subject] = self._cc.convert(super().subject_name(subject))
        return self._converted_names[subject]

    def load(self, subject: str, split: str, report: LoadReport) -> list[Question]:
        convert = self._cc.convert
        return [replace(q, question=convert(q.question), choices=tuple(convert(c) for c in q.choices),
                        passage=convert(q.passage)) for q in super().load(subject, split, report)]
