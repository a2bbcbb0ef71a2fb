"""Launch section (Slurm job settings for a run), cluster profiles (configs/clusters/) and sweeps (configs/sweeps/).

A cluster profile says how jobs reach a cluster's hardware; the run's launch section says how big its jobs are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class ComponentSpec:
    # One component of a heterogeneous Slurm job (`#SBATCH hetjob`, see launch/hetjob.py). Empty partition: the
    # launch section's or the cluster profile's; empty constraint: the profile's.
    partition: str = ""
    nodes: int = 1
    gpus: int = 0  # accelerators per node; 0 means CPU ranks (run.nproc_per_node per node)
    constraint: str = ""
    # Sequences per rank per micro-step on this component (train.micro_batch_sizes for its ranks); 0 on every
    # component: the train section's micro batch sizes (one per rank, or auto) apply.
    micro_batch: int = 0


@dataclass
class LaunchSection:
    # Cluster profile name from configs/clusters/.
    cluster: str = "local"
    nodes: int = 1
    # Accelerators per node; 0 means CPU ranks (run.nproc_per_node processes per node).
    gpus_per_node: int = 0
    # Empty means the profile's partition (or the cluster's default one).
    partition: str = ""
    time: str = "01:00:00"
    # CPU cores per rank; the node's task asks for cpus_per_rank x ranks per node.
    cpus_per_rank: int = 1
    # Memory per node, e.g. "64G"; empty means the partition's default.
    mem: str = ""
    # Seconds before the time limit at which Slurm warns the batch shell (SIGUSR1) so training can stop,
    # save a checkpoint and requeue the job.
    signal_lead_s: int = 120
    requeue: bool = True
    # A job requeues itself at most this many times (guards against a run that never progresses).
    max_requeues: int = 20
    # Seconds torchrun gives ranks to finish their checkpoint after the stop signal before killing them.
    stop_timeout_s: int = 300
    # Seconds torchrun waits for every node to join the rendezvous.
    rendezvous_timeout_s: int = 900
    # Base of the rendezvous port; the job id is added so jobs sharing a node do not collide.
    master_port_base: int = 20000
    # Array tasks for the data clean stage (`triglot data clean --shard I/N`), followed by a merge job.
    data_shards: int = 4
    # Array tasks of one job array (sweeps, data shards) running at once; 0 means no limit.
    array_parallelism: int = 0
    # Extra `#SBATCH` options, e.g. ["--exclusive", "--mail-type=END"].
    sbatch_args: list[str] = field(default_factory=list)
    # Components of one heterogeneous job for distributed stages (`--component partition=a100,nodes=2,gpus=8`,
    # repeatable), one rendezvous across all; empty: the cluster profile's components, else a plain job.
    components: list[ComponentSpec] = field(default_factory=list)


@dataclass
class ContainerSpec:
    # Empty image means no container. runtime: pyxis (srun --container-image) or apptainer (apptainer exec).
    image: str = ""
    runtime: str = "pyxis"
    # host_path:container_path pairs.
    mounts: list[str] = field(default_factory=list)


@dataclass
class ClusterProfile:
    name: str = "local"
    description: str = ""
    account: str = ""
    qos: str = ""
    partition: str = ""
    # Slurm --constraint selecting the node type, e.g. "h100" or "mi300x".
    constraint: str = ""
    # How accelerators are requested: gres ("--gres=gpu:N"), gpus ("--gpus-per-node=N") or none.
    gpu_request: str = "gres"
    gres_name: str = "gpu"
    # Environment modules loaded before the job runs (`module load NAME`).
    modules: list[str] = field(default_factory=list)
    container: ContainerSpec = field(default_factory=ContainerSpec)
    # Variables exported in the job; they win over the hardware profile's.
    env: dict[str, str] = field(default_factory=dict)
    # Shell lines run after the modules (e.g. activating a virtual environment). They are commands, written
    # into the script as they are; every other value is quoted.
    setup: list[str] = field(default_factory=list)
    # Hardware profile (configs/hardware/) of the compute nodes, used when a run says `hardware: auto`: the
    # submit host is not a compute node, so detecting there would describe the wrong machine. Empty: found from
    # the constraint, GRES name or partition (e.g. "h100"), else CPU for gpu_request none, else refused.
    hardware: str = ""
    # Python interpreter on the compute nodes. Empty: with a container, the image's `python3`; after a setup
    # line that activates a virtual environment, that environment's `python`; else the one running `triglot`.
    python: str = ""
    # Network interface for rendezvous and collectives (NCCL/GLOO/... SOCKET_IFNAME); empty leaves it to them.
    socket_ifname: str = ""
    # Heterogeneous jobs by default: distributed stages span these components (see LaunchSection.components).
    components: list[ComponentSpec] = field(default_factory=list)


@dataclass
class SweepSpec:
    name: str = "???"
    # Experiment file every run starts from, relative to the working directory.
    base: str = "???"
    # grid: every combination of `parameters`; list: the mappings in `runs`; random: `samples` draws.
    method: str = "grid"
    # Dotted key -> values. For random, a key may instead map to {min: , max: , log: true|false}.
    parameters: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    seed: int = 0
    # Overrides applied to every run (e.g. a shared packed data folder).
    overrides: list[str] = field(default_factory=list)
    # Stages each run executes, in order.
    stages: list[str] = field(default_factory=lambda: ["train"])
    # Sweep folder; empty means runs/sweeps/<name>.
    dir: Optional[str] = None
