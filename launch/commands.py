"""Command line of the launch package: `triglot launch local|slurm`, `triglot sweep` and `triglot jobs`.

Imports stay cheap here; the work happens in launch.local, launch.slurm, launch.sweep and launch.jobs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from triglot.cli import add_config_args, config_from_args

LAUNCHABLE = ("clean", "tokenizer", "pack", "train", "sft", "eval", "all")


def _launch_local(args: argparse.Namespace) -> int:
    from triglot.launch.local import launch_local

    from triglot.errors import ConfigError

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc is {args.nproc}; it must be 1 or more (leave it out to use run.nproc_per_node)")
    if args.nnodes < 1:
        raise ConfigError(f"--nnodes is {args.nnodes}; it must be 1 or more")
    if not 0 <= args.node_rank < args.nnodes:
        raise ConfigError(f"--node-rank is {args.node_rank}; it must be from 0 to --nnodes - 1 ({args.nnodes - 1})")
    cfg = config_from_args(args)
    return launch_local(cfg, args.stage, args.nproc or int(cfg.run.nproc_per_node), args.nnodes, args.node_rank,
                        args.master_addr, args.master_port, force=args.force, dry_run=args.dry_run)


def _launch_slurm(args: argparse.Namespace) -> int:
    from triglot.launch.clusters import check_account, load_cluster
    from triglot.launch.slurm import job_config, launch_stage

    from triglot.errors import ConfigError

    extra = [f"launch.{key}={value}" for key, value in
             (("nodes", args.nodes), ("gpus_per_node", args.gpus_per_node), ("partition", args.partition),
              ("time", args.time), ("cluster", args.cluster)) if value is not None]
    args.overrides = [*args.overrides, *extra]
    cfg = job_config(args.config, args.overrides)
    from triglot.launch.hetjob import apply_micro_batches, components_of, parse_component
    from triglot.launch.plan_commands import check_launch_plan

    from triglot.config.launch import ComponentSpec

    if args.component:
        cfg.launch.components = [ComponentSpec(**parse_component(text)) for text in args.component]
    # A heterogeneous job: components checked now, their micro batches written into the frozen config.
    components = components_of(cfg, load_cluster(str(cfg.launch.cluster)))
    apply_micro_batches(cfg, components)
    invocation = f"launch slurm {args.stage} {args.config} " + " ".join(
        [*args.overrides, *(f"--component {text}" for text in args.component or ())])

    def submit(dry_run: bool) -> list[dict]:
        return launch_stage(cfg, args.stage, invocation.strip(), int(cfg.launch.nodes),
                            int(cfg.launch.gpus_per_node), dry_run=dry_run, force=args.force,
                            then_eval=args.then_eval)

    records = submit(dry_run=True)  # a value the scripts cannot carry is refused before the plan is printed
    check_launch_plan(cfg, args.stage, int(cfg.launch.nodes), int(cfg.launch.gpus_per_node), args.ignore_plan,
                      components)
    if not args.dry_run:
        records = submit(dry_run=False)
    warning = ""
    if args.dry_run:
        try:
            check_account(load_cluster(str(cfg.launch.cluster)))
        except ConfigError as err:
            warning = f"# warning: {err} (a real submission is refused)"
    for record in records:
        if args.dry_run:
            print(record["text"])
            print(f"# dry run: nothing written or submitted (the script would be {record['script']})")
            if warning:
                print(warning)
        else:
            print(record["job_id"])
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from triglot.launch.sweep import run_sweep

    summary = run_sweep(Path(args.file), dry_run=args.dry_run, local=args.local, collect=args.collect,
                        overrides=args.overrides, mark_done_config=args.mark_done)
    if args.dry_run and not args.local:
        print(summary["table"])
        todo, scripts = summary.get("tasks", []), summary.get("scripts", [])
        if summary.get("script_text"):
            print(f"\n{summary['script_text']}")
        arrays = "one job array" if len(scripts) == 1 else f"{len(scripts)} job arrays (one per launch setting)"
        print(f"# dry run: nothing written or submitted; {len(todo)} of {summary['runs']} runs would be {arrays} "
              f"({summary.get('reason') or ', '.join(scripts)})")
        return 0
    summary.pop("script_text", None)
    print(json.dumps(summary, indent=2))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from triglot.launch.jobs import format_states, job_states

    print(format_states(job_states(Path(args.run_dir))))
    return 0


def add_commands(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    launch = subparsers.add_parser("launch", help="run a stage under torchrun here, or as Slurm jobs")
    kinds = launch.add_subparsers(dest="launch_command", required=True)

    local = kinds.add_parser("local", help="run a distributed stage under torchrun on this machine")
    local.add_argument("stage", choices=("train", "sft", "eval"))
    add_config_args(local)
    local.add_argument("--nproc", type=int, default=None, help="processes on this node (default run.nproc_per_node)")
    local.add_argument("--nnodes", type=int, default=1, help="launchers taking part (one per node)")
    local.add_argument("--node-rank", type=int, default=0, help="this launcher's rank among --nnodes")
    local.add_argument("--master-addr", default="127.0.0.1", help="host of node rank 0")
    local.add_argument("--master-port", type=int, default=29500)
    local.add_argument("--dry-run", action="store_true", help="print the torchrun command only")
    local.set_defaults(func=_launch_local)

    slurm = kinds.add_parser("slurm", help="render and submit sbatch scripts for a stage (or all stages)")
    slurm.add_argument("stage", choices=LAUNCHABLE)
    add_config_args(slurm)
    slurm.add_argument("--nodes", type=int, default=None, help="nodes (launch.nodes)")
    slurm.add_argument("--gpus-per-node", type=int, default=None, help="accelerators per node; 0 for CPU ranks")
    slurm.add_argument("--partition", default=None, help="Slurm partition (launch.partition)")
    slurm.add_argument("--time", default=None, help="time limit, e.g. 04:00:00 (launch.time)")
    slurm.add_argument("--cluster", default=None, help="cluster profile in configs/clusters/ (launch.cluster)")
    slurm.add_argument("--then-eval", action="store_true", help="submit eval to run after the stage succeeds")
    slurm.add_argument("--component", action="append", metavar="partition=P,nodes=N,gpus=G[,constraint=C,micro_batch=M]",
                       help="one component of a heterogeneous job (repeat for each; launch.components)")
    slurm.add_argument("--ignore-plan", action="store_true",
                       help="submit even if `triglot plan` says the training setting does not fit")
    slurm.add_argument("--dry-run", action="store_true", help="write and print the scripts, do not submit")
    slurm.set_defaults(func=_launch_slurm)

    sweep = subparsers.add_parser("sweep", help="expand a sweep file and run it as one Slurm job array")
    sweep.add_argument("file", help="sweep YAML (configs/sweeps/...)")
    sweep.add_argument("overrides", nargs="*", help="dotted overrides applied to every run of the sweep")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the runs and the array script; write and submit nothing")
    sweep.add_argument("--local", action="store_true", help="run the configs one after another here, no Slurm")
    sweep.add_argument("--collect", action="store_true", help="only rebuild the results table")
    sweep.add_argument("--mark-done", default="", metavar="CONFIG", help=argparse.SUPPRESS)
    sweep.set_defaults(func=_sweep)

    jobs = subparsers.add_parser("jobs", help="list a run folder's Slurm jobs and their states")
    jobs.add_argument("run_dir", help="run folder (run.dir) or sweep folder")
    jobs.set_defaults(func=_jobs)
