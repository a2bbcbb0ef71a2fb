"""Compose a run config from configs/ files, an experiment file and dotted command-line overrides.

Order, later wins: schema defaults < group files (model, hardware, data) < experiment < overrides.
Every user error becomes a ConfigError whose message names the key and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import typing
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from triglot.config.checks import check_config
from triglot.config.schema import CONFIG_GROUPS, RunConfig
from triglot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def find_config_root(experiment: Path | None = None) -> Path:
    """The configs/ folder: $TRIGLOT_CONFIG_ROOT, an ancestor of the experiment file, or the project's."""
    env = os.environ.get("TRIGLOT_CONFIG_ROOT")
    if env:
        return Path(env)
    if experiment is not None:
        for parent in experiment.resolve().parents:
            if (parent / "hardware").is_dir() and (parent / "model").is_dir():
                return parent
    return PROJECT_ROOT / "configs"


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a YAML config file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    if _recursive(data):
        raise ConfigError(f"{path}: a YAML alias refers to itself (&name ... *name inside it); write the value out")
    return data


def _recursive(node: Any, seen: tuple[int, ...] = ()) -> bool:
    """Whether a loaded YAML tree contains itself (an anchor used inside its own value)."""
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return True
        children = node.values() if isinstance(node, dict) else node
        return any(_recursive(child, (*seen, id(node))) for child in children)
    return False


def group_options(root: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (root / group).glob("*.yaml"))


def load_group_file(root: Path, group: str, name: str) -> dict:
    path = root / group / f"{name}.yaml"
    if not path.is_file():
        options = group_options(root, group)
        near = difflib.get_close_matches(name, options, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(
            f"no {group} config named '{name}' (looked for {path}){hint} Available: {', '.join(options) or 'none'}"
        )
    return _read_yaml(path)


def _split_overrides(overrides: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Separate group selections (`model=125m`) from dotted value overrides (`train.lr=1e-3`)."""
    groups: dict[str, str] = {}
    dotted: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (for example train.lr=0.001)")
        key, value = item.split("=", 1)
        if key in CONFIG_GROUPS:
            groups[key] = value
        else:
            dotted.append(item)
    return groups, dotted


def all_keys(schema: Any = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key the schema defines (leaves and sections)."""
    keys: list[str] = []
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        full = f"{prefix}{f.name}"
        keys.append(full)
        tp = hints[f.name]
        if is_dataclass(tp):
            keys.extend(all_keys(tp, full + "."))
    return keys


def nearest_key(bad: str) -> str | None:
    candidates = all_keys()
    close = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.6)
    if close:
        return close[0]
    leaf = bad.rsplit(".", 1)[-1]
    by_leaf = [k for k in candidates if k.rsplit(".", 1)[-1] == leaf]
    if by_leaf:
        return by_leaf[0]
    leaves = {k.rsplit(".", 1)[-1]: k for k in candidates}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    return leaves[close[0]] if close else None


def expected_type(full_key: str) -> str:
    node: Any = RunConfig
    tp: Any = None
    for part in full_key.split("."):
        if not is_dataclass(node):
            return "a value of the schema's type"
        hints = typing.get_type_hints(node)
        if part not in hints:
            return "a value of the schema's type"
        tp = hints[part]
        node = tp
    if isinstance(tp, type) and issubclass(tp, __import__("enum").Enum):
        return "one of " + ", ".join(m.value for m in tp)
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return name


def _section_replaced(base: Any, layer: Any, prefix: str = "") -> tuple[str, Any] | None:
    """The first key where `layer` puts a plain value or a list in place of a section of `base`."""
    if not (isinstance(layer, dict) and isinstance(base, DictConfig)):
        return None
    for key, value in layer.items():
        if key not in base:
            continue
        node = base._get_node(key)
        if OmegaConf.is_dict(node):
            if not isinstance(value, dict):
                return f"{prefix}{key}", value
            found = _section_replaced(node, value, f"{prefix}{key}.")
            if found:
                return found
    return None


def _friendly(err: OmegaConfBaseException, where: str, layer: Any = None, base: Any = None) -> ConfigError:
    full_key = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
    found = None if full_key else _section_replaced(base, layer)
    if found:  # a whole section replaced by a plain value or a list
        key, value = found
        return ConfigError(f"config key '{key}' ({where}) is {value!r}; it must be a mapping of settings "
                           f"(e.g. {key.rsplit('.', 1)[-1]}: {{...}})")
    if isinstance(err, ConfigKeyError) or "not in" in str(err):
        near = nearest_key(full_key)
        hint = f"; did you mean '{near}'?" if near else ""
        return ConfigError(f"unknown config key '{full_key}' ({where}){hint}")
    if isinstance(err, ValidationError):
        value = getattr(err, "value", None)
        return ConfigError(
            f"config key '{full_key}' ({where}) has value {value!r}, expected {expected_type(full_key)}"
        )
    return ConfigError(f"config error at '{full_key}' ({where}): {str(err).splitlines()[0]}")


def _merge(base: DictConfig, layer: Any, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as err:
        raise _friendly(err, where, layer, base) from None
    except TypeError:  # a list where the schema has a mapping, or the reverse
        raise ConfigError(f"{_shape_mismatch(base, layer)} ({where})") from None


def _shape_mismatch(base: Any, layer: Any, prefix: str = "") -> str:
    """Where `layer` puts a list in place of a mapping (or the reverse), as a sentence naming the key."""
    if isinstance(layer, dict) and isinstance(base, DictConfig):
        for key, value in layer.items():
            if key not in base:
                continue
            target = base._get_node(key)
            full = f"{prefix}{key}"
            if isinstance(value, (dict, list)) and OmegaConf.is_config(target):
                if isinstance(value, dict) != OmegaConf.is_dict(target):
                    want = "a mapping" if OmegaConf.is_dict(target) else "a list"
                    got = "a mapping" if isinstance(value, dict) else "a list"
                    return f"config key '{full}' is {got}; it must be {want}"
                found = _shape_mismatch(target, value, full + ".")
                if found:
                    return found
    return f"config key '{prefix.rstrip('.') or '?'}' has a list where a mapping goes, or the reverse"


def _apply_overrides(cfg: DictConfig, dotted: list[str]) -> DictConfig:
    """Merge `key=value` overrides; keys that index a list (`data.sources.0.format`) are set in place."""
    by_index = [item for item in dotted if any(p.isdigit() for p in item.split("=", 1)[0].split("."))]
    plain = [item for item in dotted if item not in by_index]
    try:
        if plain:
            try:
                layer = OmegaConf.from_dotlist(plain)
            except OmegaConfBaseException as err:
                raise ConfigError(f"cannot parse overrides {plain}: {str(err).splitlines()[0]}") from None
            cfg = _merge(cfg, OmegaConf.to_container(layer), "command line")
        for item in by_index:
            key, value = item.split("=", 1)
            if OmegaConf.select(cfg, key.rsplit(".", 1)[0]) is None:
                raise ConfigError(f"config key '{key}' (command line) points into a list item that does not exist")
            try:
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=True)
            except OmegaConfBaseException as err:
                raise _friendly(err, "command line") from None
            except TypeError:
                raise ConfigError(f"config key '{key}' (command line): {value!r} does not fit there (a list "
                                  "where a mapping goes, or the reverse)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse overrides {dotted}: {str(err).splitlines()[0]} "
                          "(quote values for the shell, e.g. run.name='\"my run\"')") from None
    return cfg


def compose(experiment: dict, overrides: Sequence[str] = (), root: Path | None = None,
            source: str = "experiment") -> DictConfig:
    """Compose a config from an experiment mapping; see the module docstring for the order."""
    root = root or find_config_root()
    experiment = dict(experiment)
    selections = _defaults(experiment.pop("defaults", None), source)
    for group in CONFIG_GROUPS:
        if isinstance(experiment.get(group), str):
            selections[group] = experiment.pop(group)
    group_overrides, dotted = _split_overrides(overrides)
    selections.update(group_overrides)

    cfg = OmegaConf.structured(RunConfig)
    for group in CONFIG_GROUPS:
        name = selections.get(group)
        if name is None:
            continue
        if group == "hardware" and name == "auto":
            from triglot.hardware import detect_profile_name

            name = detect_profile_name()
        body = load_group_file(root, group, name)
        body.setdefault("name", name)
        cfg = _merge(cfg, {group: body}, f"{root / group / name}.yaml")
    cfg = _merge(cfg, experiment, source)
    if dotted:
        cfg = _apply_overrides(cfg, dotted)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve interpolation: {str(err).splitlines()[0]}") from None
    try:
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a required key left out, e.g. a data source without its name
        key = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "?")
        raise ConfigError(f"config key '{key}' ({source}) is required and has no value; set it") from None
    check_config(cfg)
    return cfg


def _defaults(value: Any, source: str) -> dict[str, str]:
    """The `defaults:` mapping of group selections, checked: {model: tiny, hardware: cpu}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"defaults ({source}) is {value!r}; write it as a mapping of group to file, e.g. "
                          "defaults: {model: tiny, hardware: cpu}")
    for group, name in value.items():
        if group not in CONFIG_GROUPS:
            near = difflib.get_close_matches(str(group), list(CONFIG_GROUPS), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"defaults.{group} ({source}) is not a config group{hint} Groups: "
                              f"{', '.join(CONFIG_GROUPS)}")
        if not isinstance(name, str):
            raise ConfigError(f"defaults.{group} ({source}) is {name!r}; name a file of configs/{group}/, e.g. "
                              f"{group}: {(group_default_example(group))}")
    return {str(k): v for k, v in value.items()}


def group_default_example(group: str) -> str:
    return {"model": "tiny", "hardware": "cpu"}.get(group, "<name>")


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> DictConfig:
    """Load an experiment file (or a saved resolved config) and apply overrides."""
    path = Path(path)
    experiment = _read_yaml(path)
    return compose(experiment, list(overrides), find_config_root(path), source=str(path))


def to_container(cfg: Any) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def config_hash(cfg: Any) -> str:
    """Stable hash of a resolved config or any of its sections (sorted-key JSON, sha256, 16 hex)."""
    blob = json.dumps(to_container(cfg), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def to_yaml(cfg: DictConfig) -> str:
    return yaml.safe_dump(to_container(cfg), sort_keys=False, allow_unicode=True)


def save_config(cfg: DictConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config; `load_config` reads it back to the same config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_yaml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
