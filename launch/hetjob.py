"""Heterogeneous Slurm jobs: one job whose components sit on unlike partitions, one torchrun rendezvous over all.

`--component partition=a100,nodes=2,gpus=8` (repeatable), `launch.components` or a cluster profile's
`components` describe them. The script gets `#SBATCH hetjob` between the components' resource lines and runs
distributed steps with `srun --het-group=0-N` (one task per node); the node ranks run across the components in
order (a task's SLURM_PROCID, Slurm's global task rank, is its node's rank) and each node starts as many ranks
as its component has devices (CPU components: run.nproc_per_node). `micro_batch=M` on a component sets
train.micro_batch_sizes for its ranks (M sequences per rank per micro-step); without it on every component the
train section's sizes (one per rank, or `auto`) apply.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from triglot.launch.sbatch import JobSpec, Step, Var, sbatch_value, shell_line
from triglot.launch.torchrun import torchrun_argv, triglot_target

from triglot.errors import ConfigError

COMPONENT_KEYS = {"partition": str, "nodes": int, "gpus": int, "constraint": str, "micro_batch": int}


@dataclass(frozen=True)
class Component:
    partition: str
    nodes: int
    gpus: int  # per node; 0: CPU ranks
    constraint: str
    ranks_per_node: int
    micro_batch: int = 0  # sequences per rank per micro-step; 0: the train section's

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node


def parse_component(text: str) -> dict:
    """`partition=a100,nodes=2,gpus=8` -> {"partition": "a100", "nodes": 2, "gpus": 8}."""
    out: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in COMPONENT_KEYS:
            near = difflib.get_close_matches(key, COMPONENT_KEYS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"--component {text!r}: '{item}' is not KEY=VALUE with KEY one of "
                              f"{', '.join(COMPONENT_KEYS)}{hint}")
        if COMPONENT_KEYS[key] is int:
            if not value.strip().isdigit():
                raise ConfigError(f"--component {text!r}: {key} must be a whole number, got {value!r}")
            out[key] = int(value)
        else:
            out[key] = value.strip()
    return out


def components_of(cfg: Any, cluster: Any) -> list[Component]:
    """The heterogeneous job's components (launch.components, else the cluster profile's), checked; [] for none."""
    given = list(cfg.launch.components) or list(cluster.components)
    if len(given) == 1:
        raise ConfigError("launch.components: a heterogeneous job needs two components or more; for one, use "
                          "launch.partition, launch.nodes and launch.gpus_per_node instead")
    out = []
    for i, c in enumerate(given):
        if int(c.nodes) < 1 or int(c.gpus) < 0 or int(c.micro_batch) < 0:
            raise ConfigError(f"launch.components[{i}]: nodes must be 1 or more, gpus and micro_batch 0 or more "
                              f"(got nodes={c.nodes}, gpus={c.gpus}, micro_batch={c.micro_batch})")
        ranks = int(c.gpus) if int(c.gpus) > 0 else max(1, int(cfg.run.nproc_per_node))
        out.append(Component(partition=str(c.partition), nodes=int(c.nodes), gpus=int(c.gpus),
                             constraint=str(c.constraint), ranks_per_node=ranks, micro_batch=int(c.micro_batch)))
    for i, c in enumerate(out):  # refused here, before anything is frozen or submitted
        component_lines(i, c, cfg, cluster)
    return out


def apply_micro_batches(cfg: Any, components: list[Component]) -> None:
    """Components' `micro_batch` -> train.micro_batch_sizes, one entry per rank in rank order (components in order)."""
    given = [c.micro_batch for c in components]
    if not any(given):
        return
    if not all(given):
        raise ConfigError("launch.components: micro_batch is set on some components only; set it on every "
                          "component, or on none and use train.micro_batch_sizes (a list or auto)")
    sizes = [c.micro_batch for c in components for _ in range(c.ranks)]
    current = cfg.train.micro_batch_sizes
    if isinstance(current, str) or (current and [int(s) for s in current] != sizes):
        raise ConfigError(f"launch.components set micro batches {sizes} but train.micro_batch_sizes is "
                          f"{current if isinstance(current, str) else list(current)}; drop one of the two")
    cfg.train.micro_batch_sizes = sizes


def job_components(spec: JobSpec, cfg: Any, cluster: Any) -> list[Component]:
    """The components of `spec` when it runs a distributed step and a heterogeneous job is asked for, else []."""
    if not any(step.distributed for step in spec.steps):
        return []
    components = components_of(cfg, cluster)
    if components and spec.array:
        raise ConfigError("launch.components: Slurm runs no job arrays of heterogeneous jobs; drop the components "
                          "for array jobs (sweeps, data shards)")
    return components


def component_lines(i: int, c: Component, cfg: Any, cluster: Any) -> list[str]:
    """The resource options of one component (options like --time and --account carry over from the first)."""
    lines = [f"--nodes={c.nodes}", "--ntasks-per-node=1",
             f"--cpus-per-task={max(1, c.ranks_per_node * int(cfg.launch.cpus_per_rank))}"]
    partition = c.partition or cfg.launch.partition or cluster.partition
    constraint = c.constraint or cluster.constraint
    if partition:
        lines.append(f"--partition={sbatch_value(f'launch.components[{i}].partition', partition)}")
    if constraint:
        lines.append(f"--constraint={sbatch_value(f'launch.components[{i}].constraint', constraint)}")
    if c.gpus and cluster.gpu_request == "gres":
        lines.append(f"--gres={sbatch_value('gres_name', cluster.gres_name)}:{c.gpus}")
    elif c.gpus and cluster.gpu_request == "gpus":
        lines.append(f"--gpus-per-node={c.gpus}")
    return lines


def hetjob_lines(plain: list[str], components: list[Component], cfg: Any, cluster: Any) -> list[str]:
    """`#SBATCH` lines: the job's own options with the first component's resources, then `hetjob` and the next."""
    resource = ("--nodes=", "--ntasks-per-node=", "--cpus-per-task=", "--partition=", "--constraint=", "--gres=",
                "--gpus-per-node=")
    lines = [line for line in plain if not line.startswith(resource)]
    lines += component_lines(0, components[0], cfg, cluster)
    for i, c in enumerate(components[1:], start=1):
        lines += ["hetjob", *component_lines(i, c, cfg, cluster)]
    return lines


def hetjob_rank_command(step: Step, cfg: Any) -> str:
    """torchrun on every node of every component: nodes from $NODES; ranks per node from PET_NPROC_PER_NODE,
    which the task sets from its component (see the job script)."""
    launch = cfg.launch
    argv = torchrun_argv(Var("$RANKS_PER_NODE"), triglot_target(step.args), nnodes=Var("$NODES"), node_rank=None,
                         master_addr=Var("$MASTER_ADDR"), master_port=Var("$MASTER_PORT"),
                         rendezvous_timeout_s=int(launch.rendezvous_timeout_s),
                         stop_timeout_s=int(launch.stop_timeout_s), forward_signals=True, python=Var("$PYTHON"))
    return shell_line([word for word in argv if not str(word).startswith("--nproc-per-node=")])


def template_values(components: list[Component], cfg: Any) -> dict:
    """What the job template needs for a heterogeneous job (plain numbers, and a summary for a comment)."""
    cpus = int(cfg.launch.cpus_per_rank)
    return {"ranks": " ".join(str(c.ranks_per_node) for c in components), "world": sum(c.ranks for c in components),
            "groups": [{"index": i, "nodes": c.nodes, "cpus": max(1, c.ranks_per_node * cpus)}
                       for i, c in enumerate(components)],
            "summary": ", ".join(f"{c.partition or 'default partition'}: {c.nodes} node(s) x "
                                 f"{c.ranks_per_node} rank(s)" for c in components)}
