"""Every default lives once, in the schema: no shipped YAML restates the value it would get anyway."""

from __future__ import annotations

import enum
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from triglot.config import compose, to_container
from triglot.config.launch import ClusterProfile
from triglot.config.schema import CONFIG_GROUPS, RunConfig

# Stated on purpose even when equal to the default: a source's licence is a finding, not a setting, and a
# hardware profile names its device, precision, attention and backend in full (the README's table).
DOCUMENTARY = {"license", "accelerator", "precision", "attention", "comm_backend"}


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _item_type(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if typing.get_origin(tp) is list and args and is_dataclass(args[0]) else None


def restated_defaults(body: dict, schema: Any, prefix: str = "") -> list[str]:
    """Dotted keys of `body` whose value equals the schema's default for that key."""
    hints = typing.get_type_hints(schema)
    by_name = {f.name: f for f in fields(schema)}
    found = []
    for key, value in body.items():
        if key not in by_name:
            continue  # unknown keys are the loader's business
        tp, full = hints[key], f"{prefix}{key}"
        if is_dataclass(tp) and isinstance(value, dict):
            found += restated_defaults(value, tp, full + ".")
        elif _item_type(tp) and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    found += restated_defaults(item, _item_type(tp), f"{full}[{i}].")
        elif _plain(_default(by_name[key])) == value and key not in DOCUMENTARY:
            found.append(full)
    return found


def _section(name: str) -> Any:
    return typing.get_type_hints(RunConfig)[name]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _shipped(repo_root: Path, folder: str) -> list[Path]:
    return sorted((repo_root / "configs" / folder).glob("*.yaml"))


def test_group_files_restate_no_schema_default(repo_root: Path) -> None:
    offenders = []
    for group in CONFIG_GROUPS:
        for path in _shipped(repo_root, group):
            body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            offenders += [f"{path.relative_to(repo_root)}: {group}.{k}" for k in
                          restated_defaults(body, _section(group)) if k != "name"]
    for path in _shipped(repo_root, "clusters"):
        body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        offenders += [f"{path.relative_to(repo_root)}: {k}" for k in restated_defaults(body, ClusterProfile)
                      if k != "name"]
    assert offenders == [], "values equal to the schema default; drop them from the YAML"


def test_experiments_restate_nothing_their_groups_give(repo_root: Path) -> None:
    """An experiment's value may undo a group file's, but not repeat what it would get anyway."""
    offenders = []
    for folder in ("experiments", "sweeps"):
        for path in _shipped(repo_root, folder):
            body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if folder == "sweeps":
                body = body.get("base", {}) if isinstance(body.get("base"), dict) else {}
            base = _flat(to_container(compose({"defaults": body.get("defaults", {})})))
            own = _flat({k: v for k, v in body.items() if k != "defaults" and k not in CONFIG_GROUPS}
                        | {k: v for k, v in body.items() if k in CONFIG_GROUPS and isinstance(v, dict)})
            offenders += [f"{path.relative_to(repo_root)}: {k}" for k, v in own.items() if k in base and base[k] == v]
    assert offenders == [], "values the experiment would get anyway; drop them"


def test_the_check_sees_a_restated_default() -> None:
    train = _section("train")
    lr = _default(next(f for f in fields(train) if f.name == "lr"))
    assert restated_defaults({"lr": lr, "steps": -1, "checkpoint": {"resume": True}}, train) == \
        ["lr", "checkpoint.resume"]
    assert restated_defaults({"lr": lr * 2}, train) == []


@pytest.mark.parametrize("group", CONFIG_GROUPS)
def test_every_group_has_a_schema_section(group: str) -> None:
    assert is_dataclass(_section(group))
