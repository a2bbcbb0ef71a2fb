"""Launch section: Slurm cluster profile and job settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LaunchSection:
    # Cluster profile name from configs/clusters/.
    cluster: str = "local"
    nodes: int = 1
    time: str = "01:00:00"
