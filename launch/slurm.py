"""Slurm jobs for triglot stages: build job specs, submit them with `sbatch --parsable`, chain dependencies.

Each run folder keeps `jobs/jobs.jsonl` (what was submitted) and `jobs/<id>.events` (what each job did).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from triglot.launch.clusters import check_account, hardware_from_cluster, load_cluster
from triglot.launch.frozen import freeze_config, frozen_config_path
from triglot.launch.sbatch import CONFIG_VAR, JobSpec, Step, Var, job_name, render

from triglot.config import load_config, save_config
from triglot.config.loader import _read_yaml
from triglot.errors import ConfigError, InputError
from triglot.stages import STAGES

log = logging.getLogger(__name__)

JOBS_DIR = "jobs"
JOBS_FILE = "jobs.jsonl"
SHARD_VAR = Var("$SLURM_ARRAY_TASK_ID/$SHARDS")
PARTITION_VAR = Var("$SLURM_ARRAY_TASK_ID")


def requested_hardware(config: str, overrides: list[str]) -> str:
    """The hardware the user asked for (an override, else the experiment's selection), before `auto` resolves."""
    for item in reversed(overrides):
        if item.startswith("hardware="):
            return item.split("=", 1)[1]
    body = _read_yaml(Path(config))
    if isinstance(body.get("hardware"), str):
        return body["hardware"]
    selected = (body.get("defaults") or {}).get("hardware")
    if selected:
        return str(selected)
    section = body.get("hardware")
    return str(section.get("name", "auto")) if isinstance(section, dict) else "auto"


def job_config(config: str, overrides: list[str]) -> Any:
    """The run's config for jobs on a cluster's compute nodes, not for this submit host.

    `hardware: auto` resolves from the cluster profile (launch.clusters.hardware_from_cluster) or is refused,
    and an accelerator run without --gpus-per-node asks for the profile's devices per node.
    """
    cfg = load_config(config, overrides)
    if requested_hardware(config, overrides) == "auto":
        name = hardware_from_cluster(load_cluster(str(cfg.launch.cluster)), int(cfg.launch.gpus_per_node))
        if name != cfg.hardware.name:
            cfg = load_config(config, [*overrides, f"hardware={name}"])
    if str(cfg.hardware.accelerator) != "cpu" and int(cfg.launch.gpus_per_node) == 0:
        cfg.launch.gpus_per_node = int(cfg.hardware.devices_per_node)
    return cfg


def ranks_per_node(cfg: Any, gpus_per_node: int) -> int:
    """Accelerator ranks per node, or run.nproc_per_node CPU ranks."""
    return gpus_per_node if gpus_per_node > 0 else max(1, int(cfg.run.nproc_per_node))


def stage_steps(stage: str, cfg: Any, force: bool = False) -> list[Step]:
    """The job steps that run `stage` on the config in $CONFIG."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; stages are: {', '.join(STAGES)}")
    spec = STAGES[stage]
    extra = ["--force"] if force else []
    what = f"stage {stage}: triglot {' '.join(spec.command)}"
    if spec.distributed:
        what += " under torchrun on every node"
    return [Step(stage, [*spec.command, CONFIG_VAR, *extra], what, distributed=spec.distributed)]


def stage_jobs(stage: str, cfg: Any, config_path: Path, invocation: str, nodes: int, gpus_per_node: int,
               force: bool = False) -> list[JobSpec]:
    """Jobs that run `stage` (or `all` stages of run.stages), in order; each later one depends on the one before."""
    names = list(cfg.run.stages) if stage == "all" else [stage]
    run_dir = Path(cfg.run.dir)
    jobs: list[JobSpec] = []
    for name in names:
        if name == "clean" and int(cfg.launch.data_shards) > 1:
            jobs.extend(clean_jobs(cfg, config_path, invocation, force))
            continue
        distributed = STAGES[name].distributed if name in STAGES else False
        jobs.append(JobSpec(
            name=f"{cfg.run.name}-{name}", run_dir=run_dir, steps=stage_steps(name, cfg, force),
            invocation=invocation, config=str(config_path),
            nodes=nodes if distributed else 1,
            ranks_per_node=ranks_per_node(cfg, gpus_per_node) if distributed else 1,
            gpus_per_node=gpus_per_node if distributed else 0,
        ))
    return jobs


def clean_jobs(cfg: Any, config_path: Path, invocation: str, force: bool = False) -> list[JobSpec]:
    """The clean stage as a job array over data shards (the map), then the global dedup and the write.

    With data.dedup.partitions = K > 1 the dedup runs as arrays of K tasks, one per key bucket: the exact pass,
    then the near pass (it reads the exact pass's result), then one job writes the shards and the report.
    With K = 1 a single merge job does both. Each job is submitted `afterok` on the one before it.
    """
    shards = int(cfg.launch.data_shards)
    extra = ["--force"] if force else []
    run_dir = Path(cfg.run.dir)
    shard_step = Step("clean-shard", ["data", "clean", CONFIG_VAR, "--shard", SHARD_VAR, *extra],
                      f"clean shard $SLURM_ARRAY_TASK_ID of {shards}: triglot data clean --shard I/N")
    jobs = [JobSpec(name=f"{cfg.run.name}-clean", run_dir=run_dir, steps=[shard_step], invocation=invocation,
                    config=str(config_path), array=f"0-{shards - 1}", extra_vars={"SHARDS": str(shards)})]
    dedup = cfg.data.dedup
    partitions = int(dedup.partitions)
    merge_args = ["data", "merge", CONFIG_VAR, *extra]
    if partitions > 1:
        for phase in [p for p in ("exact", "near") if bool(getattr(dedup, p))]:
            step = Step(f"dedup-{phase}", [*merge_args, "--phase", phase, "--partition", PARTITION_VAR],
                        f"{phase} dedup of key bucket $SLURM_ARRAY_TASK_ID of {partitions}: "
                        f"triglot data merge --phase {phase} --partition P")
            jobs.append(JobSpec(name=f"{cfg.run.name}-dedup-{phase}", run_dir=run_dir, steps=[step],
                                invocation=invocation, config=str(config_path), array=f"0-{partitions - 1}"))
        merge_args.append("--write-only")
    merge_step = Step("clean-merge", merge_args, "write the deduplicated shards and the report: triglot data merge"
                      if partitions > 1 else "merge the cleaned shards and their reports: triglot data merge")
    jobs.append(JobSpec(name=f"{cfg.run.name}-merge", run_dir=run_dir, steps=[merge_step], invocation=invocation,
                        config=str(config_path)))
    return jobs


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise InputError("sbatch not found: run on a Slurm login node, or start the local cluster with "
                         "launch/slurm_local.sh start (and export SLURM_CONF as it prints)")


def sbatch(script: Path, dependency: str = "") -> str:
    """Submit `script`; returns the job id (`sbatch --parsable` prints `id` or `id;cluster`)."""
    require_slurm()
    cmd = ["sbatch", "--parsable", *([f"--dependency={dependency}"] if dependency else []), str(script)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InputError(f"sbatch {script} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]


def record_job(run_dir: Path, record: dict) -> None:
    folder = run_dir / JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / JOBS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def script_path(spec: JobSpec) -> Path:
    return spec.run_dir / JOBS_DIR / f"{job_name(spec.name)}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"


def write_script(spec: JobSpec, text: str) -> Path:
    """Write a job's script into <run_dir>/jobs/ (and make logs/, which Slurm does not create)."""
    script = script_path(spec)
    script.parent.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / "logs").mkdir(exist_ok=True)
    script.write_text(text, encoding="utf-8")
    return script


def submit_chain(jobs: list[JobSpec], cfg: Any, cluster: Any, dry_run: bool = False,
                 after: str = "") -> list[dict]:
    """Render every job's script, write it into <run_dir>/jobs/ and submit them in order with `afterok`.

    A dry run writes nothing: each record's "text" holds the script and "script" the path it would have.
    """
    records: list[dict] = []
    previous = after
    for spec in jobs:
        text = render(spec, cfg, cluster)
        dependency = f"afterok:{previous}" if previous else ""
        record = {"name": spec.name, "steps": [s.name for s in spec.steps], "array": spec.array,
                  "dependency": dependency, "submitted": time.time(), "text": text}
        if dry_run:
            record.update(job_id="", script=str(script_path(spec).resolve()))
            previous = f"<job id of {spec.name}>"
        else:
            script = write_script(spec, text)
            record.update(script=str(script.resolve()), job_id=sbatch(script, dependency))
            previous = record["job_id"]
            record_job(spec.run_dir, {k: v for k, v in record.items() if k != "text"})
            log.info("submitted %s as job %s%s", spec.name, record["job_id"],
                     f" ({dependency})" if dependency else "")
        records.append(record)
    return records


def launch_stage(cfg: Any, stage: str, invocation: str, nodes: int, gpus_per_node: int, dry_run: bool = False,
                 force: bool = False, then_eval: bool = False) -> list[dict]:
    """Freeze the resolved config and submit the stage's jobs (plus eval after train); a dry run writes nothing.

    Every job reads `<run.dir>/configs/<hash>.yaml`, which no later command rewrites; `<run.dir>/config.yaml`
    is a copy of the latest submitted config for people to read.
    """
    cluster = load_cluster(str(cfg.launch.cluster))
    if not dry_run:
        check_account(cluster)
    config_path = frozen_config_path(cfg) if dry_run else freeze_config(cfg)
    if not dry_run:
        save_config(cfg, Path(cfg.run.dir) / "config.yaml")
    jobs = stage_jobs(stage, cfg, config_path, invocation, nodes, gpus_per_node, force)
    if then_eval:
        jobs += stage_jobs("eval", cfg, config_path, invocation, nodes, gpus_per_node, force)
    return submit_chain(jobs, cfg, cluster, dry_run=dry_run)
