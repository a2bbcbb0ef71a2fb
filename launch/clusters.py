"""Cluster profiles from configs/clusters/: account, QoS, GPU constraint, modules, container, environment.

A profile is typed by `triglot.config.launch.ClusterProfile`; unknown keys and wrong types are config errors.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from triglot.config import find_config_root
from triglot.config.checks import check_name
from triglot.config.launch import ClusterProfile
from triglot.config.loader import _read_yaml, load_group_file
from triglot.errors import ConfigError


def load_cluster(name: str, root: Path | None = None) -> DictConfig:
    """The profile `name` (a file in configs/clusters/ or a path to a YAML file), validated."""
    root = root or find_config_root()
    if name.endswith((".yaml", ".yml")) or "/" in name:
        body, where = _read_yaml(Path(name)), name
    else:
        body, where = load_group_file(root, "clusters", name), str(root / "clusters" / f"{name}.yaml")
    body.setdefault("name", Path(name).stem)
    try:
        profile = OmegaConf.merge(OmegaConf.structured(ClusterProfile), body)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(f"{where}: cluster profile key '{key}': {str(err).splitlines()[0]}") from None
    check_name("cluster profile name", profile.name, where)
    if profile.gpu_request not in ("gres", "gpus", "none"):
        raise ConfigError(f"{where}: gpu_request is '{profile.gpu_request}'; use gres, gpus or none")
    if profile.container.image and profile.container.runtime not in ("pyxis", "apptainer"):
        raise ConfigError(f"{where}: container.runtime is '{profile.container.runtime}'; use pyxis or apptainer")
    return profile
