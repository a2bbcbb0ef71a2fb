"""Cluster profiles from configs/clusters/: account, QoS, GPU constraint, modules, container, environment.

A profile is typed by `triglot.config.launch.ClusterProfile`; unknown keys and wrong types are config errors.
"""

from __future__ import annotations

import re
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


# Accounts that example profiles ship with: a job submitted with one is refused by the site or, worse, charged
# to someone else's allocation.
PLACEHOLDER_ACCOUNT = re.compile(r"(my|your)[-_]?(account|project|allocation)|change[-_]?me|<.*>|xxx+|todo",
                                 re.IGNORECASE)
GENERIC_WORDS = {"nvidia", "amd", "intel", "generic"}


def profile_tokens(name: str) -> set[str]:
    """Words of a hardware profile name that a site uses for its nodes: nvidia-h100 -> h100; gaudi2 -> gaudi."""
    tokens = {part for part in name.lower().split("-") if part not in GENERIC_WORDS}
    tokens |= {t.rstrip("0123456789") for t in tokens if len(t.rstrip("0123456789")) >= 4}
    return tokens


def hardware_from_cluster(cluster: DictConfig, gpus_per_node: int, root: Path | None = None) -> str:
    """The hardware profile of the cluster's compute nodes, for a run that says `hardware: auto`.

    The profile's `hardware`, else the one hardware profile whose name's words appear in the constraint, GRES
    name or partition, else `cpu` for a cluster without accelerators (gpu_request none, no --gpus-per-node).
    """
    from triglot.config.loader import group_options

    root = root or find_config_root()
    if cluster.hardware:
        return str(cluster.hardware)
    words = set(re.split(r"[^a-z0-9]+", " ".join([str(cluster.constraint), str(cluster.gres_name),
                                                  str(cluster.partition)]).lower())) - {""}
    matches = sorted(name for name in group_options(root, "hardware") if profile_tokens(name) & words)
    if len(matches) == 1:
        return matches[0]
    if not matches and cluster.gpu_request == "none" and gpus_per_node == 0:
        return "cpu"
    found = f"; it matches {', '.join(matches)}" if matches else ""
    gpus = f" with --gpus-per-node {gpus_per_node}" if gpus_per_node else ""
    raise ConfigError(
        f"hardware: auto cannot be resolved for cluster profile '{cluster.name}'{gpus}: the jobs run on its "
        f"compute nodes, not on this host{found}. Name the nodes' profile with hardware=<profile> (one of "
        f"{', '.join(group_options(root, 'hardware'))}), or add `hardware: <profile>` to the cluster profile "
        f"chosen with launch.cluster={cluster.name}")


def check_account(cluster: DictConfig) -> None:
    """Refuse a profile whose account is still an example's placeholder."""
    if cluster.account and PLACEHOLDER_ACCOUNT.fullmatch(str(cluster.account)):
        raise ConfigError(f"cluster profile '{cluster.name}': account is '{cluster.account}', a placeholder; set "
                          "`account:` to your Slurm account (sacctmgr show assoc user=$USER) in its YAML, or choose "
                          "another profile with launch.cluster=")


def activates_venv(cluster: DictConfig) -> bool:
    return any(re.search(r"(^|[\s;&])(source|\.)\s+\S*bin/activate\b", str(line)) for line in cluster.setup)


def job_python(cluster: DictConfig, submit_python: str) -> str:
    """The interpreter job steps run, agreeing with the profile's container and venv activation (see schema)."""
    if cluster.python:
        return str(cluster.python)
    if cluster.container.image:
        if activates_venv(cluster):
            raise ConfigError(
                f"cluster profile '{cluster.name}': its setup activates a virtual environment on the node, but the "
                f"steps run inside container {cluster.container.image}, whose Python does not see it; install "
                "triglot in the image and drop the activate line, or set `python:` to the interpreter inside "
                "the container that has triglot (e.g. /workspace/triglot/.venv/bin/python)")
        return "python3"
    return "python" if activates_venv(cluster) else submit_python
