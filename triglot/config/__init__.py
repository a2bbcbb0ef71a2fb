"""Typed run config: schema, composition from configs/ files, overrides and hashing."""

from triglot.config.loader import (
    ConfigError,
    compose,
    config_hash,
    find_config_root,
    load_config,
    save_config,
    to_container,
    to_yaml,
)
from triglot.config.schema import RunConfig

__all__ = [
    "ConfigError",
    "RunConfig",
    "compose",
    "config_hash",
    "find_config_root",
    "load_config",
    "save_config",
    "to_container",
    "to_yaml",
]
