"""`triglot data clean` and `triglot data merge`: the clean stage on one node or as Slurm array slices.

CONFIG is an experiment file, or a data config (configs/data/NAME.yaml, a file with top-level `sources`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from triglot.cli import add_config_args, config_from_args
from triglot.errors import ConfigError, InputError


def load_clean_config(args: argparse.Namespace) -> Any:
    """An experiment config, or a run built around a bare data config (run dir runs/data-<name>)."""
    import yaml

    from triglot.config import compose

    path = Path(args.config)
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        body = None  # load_config reports what is wrong with the file
    if isinstance(body, dict) and "sources" in body:
        body.setdefault("name", path.stem)
        return compose({"data": body, "run": {"name": f"data-{path.stem}"}}, args.overrides, source=str(path))
    return config_from_args(args)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard '{text}' must look like I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need 0 <= I < N")
    return index, count


def _clean(args: argparse.Namespace) -> int:
    from triglot.data_pipeline.clean import run_clean_stage

    result = run_clean_stage(load_clean_config(args), force=args.force, workers=args.workers,
                             shard=parse_shard(args.shard))
    counts = result.get("counts", result)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from triglot.data_pipeline.clean import merge_clean_stage
    from triglot.data_pipeline.dedup_partitions import missing_partitions, run_partition, stage_dedup_plan

    if args.partitions is not None:
        args.overrides = [*args.overrides, f"data.dedup.partitions={args.partitions}"]
    cfg = load_clean_config(args)
    if (args.partition is None) != (args.phase is None):
        raise ConfigError("--partition P and --phase exact|near go together (one dedup partition task)")
    if args.partition is not None:
        marker = run_partition(stage_dedup_plan(cfg), args.phase, args.partition, force=args.force)
        print(" ".join(f"{k}={marker[k]}" for k in ("phase", "partition", "of", "keys", "dropped", "skipped")))
        return 0
    if args.write_only:
        missing = missing_partitions(stage_dedup_plan(cfg))
        if missing:
            phase, p = missing[0]
            raise InputError(f"{len(missing)} dedup partition task(s) not done (first: {phase} {p}); run "
                             f"`triglot data merge CONFIG --phase {phase} --partition {p}` or drop --write-only")
    result = merge_clean_stage(cfg, force=args.force)
    print(" ".join(f"{k}={v}" for k, v in result.get("counts", {}).items()))
    return 0


def add_commands(subparsers: Any, groups: dict[str, Any]) -> None:
    clean = groups["data"].add_parser("clean", help="clean, identify, filter, scrub and deduplicate corpora")
    add_config_args(clean)
    clean.add_argument("--workers", type=int, default=None, help="worker processes (default data.workers)")
    clean.add_argument("--shard", default=None, metavar="I/N",
                       help="clean only slice I of N (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); "
                            "then run `triglot data merge`")
    clean.set_defaults(func=_clean)
    merge = groups["data"].add_parser("merge", help="after sharded cleaning: global dedup, shards and report")
    add_config_args(merge)
    merge.add_argument("--partitions", type=int, default=None, metavar="K",
                       help="dedup in K key buckets, K processes here (data.dedup.partitions)")
    merge.add_argument("--phase", choices=("exact", "near"), default=None,
                       help="with --partition: which dedup pass (every exact partition before any near one)")
    merge.add_argument("--partition", type=int, default=None, metavar="P",
                       help="run only dedup partition P of K (e.g. $SLURM_ARRAY_TASK_ID) and exit")
    merge.add_argument("--write-only", action="store_true",
                       help="only write shards and report; fail if a dedup partition task is not done")
    merge.set_defaults(func=_merge)
