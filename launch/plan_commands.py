"""`triglot plan CONFIG [--nodes N --gpus-per-node G]`: per-device memory of every ZeRO setting, and the fastest
that fits; `launch slurm` calls `check_launch_plan` to refuse a training job that cannot fit before submitting it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from triglot.cli import add_config_args
from triglot.errors import ConfigError
from triglot.plan import GIB, Estimate, Plan, plan_for_config, vocab_for_plan

# Stages whose jobs train a model (full fine-tuning included): the ones the plan checks before a launch.
PLANNED_STAGES = ("train", "sft")
COLUMNS = ("params", "grads", "optimizer", "gathered", "buffers", "live", "activations", "allowance", "total", "host")


def _gib(value: int) -> str:
    return f"{value / GIB:7.1f}"


def _fits(est: Estimate) -> str:
    return {None: "?", True: "yes", False: "no"}[est.fits]


def _changes(plan: Plan, target: Estimate) -> str:
    """The overrides that turn the configured setting into `target`."""
    now = set(plan.configured.setting.overrides)
    return " ".join(item for item in target.setting.overrides if item not in now)


def format_plan(plan: Plan, vocab_note: str = "") -> str:
    """A readable table of every setting (GiB per device; host = offloaded bytes per rank) and the verdict."""
    work, shape = plan.work, plan.shape
    capacity = f"{plan.capacity / GIB:.0f} GiB each" if plan.capacity else "memory not stated by the profile"
    lines = [f"plan: model {plan.model} ({shape.params / 1e9:.2f}B parameters{vocab_note}) on {plan.nodes} node(s) "
             f"x {plan.gpus_per_node} {plan.device}, {capacity}",
             f"workload: {work.precision}, micro batch {work.micro_batch} x {work.seq_len} tokens, {work.attention} "
             f"attention, {work.world} data-parallel ranks",
             f"{'setting (GiB per device)':36}" + "".join(f"{c[:8]:>9}" for c in COLUMNS) + "  fits"]
    for est in plan.estimates:
        mark = "*" if est.setting == plan.configured.setting else " "
        lines.append(f"{mark}{est.setting.label:35}" + "".join(f"  {_gib(getattr(est, c))}" for c in COLUMNS)
                     + f"  {_fits(est)}")
    lines.append(f"configured (*): {plan.configured.setting.label}, {plan.configured.total / GIB:.1f} GiB per device"
                 + ("" if plan.configured.fits is None else f": {'fits' if plan.configured.fits else 'does NOT fit'}"))
    lines.append(f"recommended: {recommendation(plan)}")
    return "\n".join(lines)


def recommendation(plan: Plan) -> str:
    if not plan.capacity:
        return "none (the hardware profile gives no memory_gb; set hardware.memory_gb to check the fit)"
    if plan.recommended is None:
        more = f"at least {plan.min_nodes} nodes" if plan.min_nodes else "far more nodes"
        return (f"nothing fits on {plan.nodes} node(s); use {more} (--nodes), or lower train.micro_batch_size "
                "or train.seq_len")
    change = _changes(plan, plan.recommended)
    return (f"{plan.recommended.setting.label} ({plan.recommended.total / GIB:.1f} GiB"
            f"{': ' + change if change else ', as configured'}); the fastest setting that fits")


def training_sections(cfg: Any, stage: str) -> list[tuple[str, Any]]:
    """(stage, train section) for each training stage a launch of `stage` runs; full fine-tuning only."""
    from omegaconf import OmegaConf

    names = list(cfg.run.stages) if stage == "all" else [stage]
    out = []
    for name in names:
        if name == "train":
            out.append((name, cfg.train))
        elif name == "sft" and not cfg.sft.lora.enabled:
            out.append((name, OmegaConf.merge(cfg.train, cfg.sft.train)))
    return out


def check_launch_plan(cfg: Any, stage: str, nodes: int, gpus_per_node: int, ignore: bool = False,
                      components: list[Any] = ()) -> None:
    """Print the plan of each training stage on stderr; a configured setting that cannot fit is refused
    (ConfigError naming the setting to change) unless `ignore`. With a heterogeneous job's `components`,
    the plan is for their nodes and ranks, not launch.nodes x launch.gpus_per_node."""
    world = None
    if components:
        nodes, world = sum(c.nodes for c in components), sum(c.ranks for c in components)
        gpus_per_node = max(c.gpus for c in components)
    for name, train in training_sections(cfg, stage):
        plan = plan_for_config(cfg, nodes, gpus_per_node, train, world=world)
        print("\n".join(f"# {line}" for line in format_plan(plan).splitlines()), file=sys.stderr)
        if plan.configured.fits is not False or ignore:
            continue
        need = f"{name}: {plan.configured.setting.label} needs {plan.configured.total / GIB:.1f} GiB per device, " \
               f"more than the {plan.capacity / GIB:.0f} GiB of {cfg.hardware.name}"
        if plan.recommended is not None:
            fix = f"set {_changes(plan, plan.recommended)}"
        else:
            fix = f"use more nodes (at least {plan.min_nodes})" if plan.min_nodes else "use far more nodes"
        raise ConfigError(f"{need}; {fix} (see `triglot plan`), or pass --ignore-plan")


def _plan(args: argparse.Namespace) -> int:
    from triglot.config import load_config

    cfg = load_config(args.config, args.overrides)
    nodes = args.nodes if args.nodes is not None else int(cfg.launch.nodes)
    gpus = args.gpus_per_node
    if gpus is None:
        gpus = int(cfg.launch.gpus_per_node) or (int(cfg.hardware.devices_per_node)
                                                  if cfg.hardware.accelerator != "cpu" else 0)
    if nodes < 1 or gpus < 0:
        raise ConfigError("--nodes must be at least 1 and --gpus-per-node at least 0")
    plan = plan_for_config(cfg, nodes, gpus)
    vocab, source = vocab_for_plan(cfg)
    if args.json:
        print(json.dumps({**plan.to_dict(), "recommendation": recommendation(plan)}, indent=2))
    else:
        note = "" if cfg.model.pretrained else f", vocabulary {vocab} from {source}"
        print(format_plan(plan, note))
    return 0


def add_commands(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    plan = subparsers.add_parser("plan", help="per-device memory of each ZeRO setting and the fastest that fits")
    add_config_args(plan, force=False)
    plan.add_argument("--nodes", type=int, default=None, help="nodes (default launch.nodes)")
    plan.add_argument("--gpus-per-node", type=int, default=None,
                      help="devices per node (default launch.gpus_per_node, else the profile's devices_per_node)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=_plan)
